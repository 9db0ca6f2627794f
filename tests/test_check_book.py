"""The book checker's source-level checks (scripts/check_book.py); its in-browser checks are
checked by ``make check-book``'s ``--self-test`` (a planted too-wide equation and broken table row)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_book", ROOT / "scripts" / "check_book.py")
check_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_book)


def test_a_table_row_split_by_a_pipe_in_inline_code_is_reported(tmp_path):
    md = tmp_path / "page.md"
    md.write_text("# t\n\n| a | b | c |\n|---|:---:|---|\n| 1 | 2 | 3 |\n| eq. 4 | `/ |hw|` | x |\n"
                  "| ok | `\\|hw\\|` | y |\n\n```\n| a |\n|---|\n| 1 | 2 |\n```\n")
    found = check_book.table_findings(md)
    assert len(found) == 1, found
    line, msg = found[0]
    assert line == "6" and "5 cells, its header 3" in msg and "`/ |hw|`" in msg


def test_tables_in_notebook_markdown_cells_are_read(tmp_path):
    import json

    nb = tmp_path / "page.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "| a | b |\n|---|---|\n| 1 |"},
                                        {"cell_type": "markdown", "source": ["| a | b |\n", "|---|---|\n", "| 1 |\n"]}]}))
    assert [w for w, _ in check_book.table_findings(nb)] == ["cell 1, line 3"]


def test_the_books_own_sources_have_no_broken_table_rows():
    found = {str(p.relative_to(ROOT)): check_book.table_findings(p)
             for p in sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "notebooks").glob("*.ipynb"))}
    assert not {k: v for k, v in found.items() if v}
