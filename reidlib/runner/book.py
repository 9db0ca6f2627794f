"""Prepare the Jupyter Book: one page per experiment, rendered from an executed notebook in ``results/``.

``python -m reidlib.runner.book prepare`` copies, for every notebook listed in ``notebooks/order.json``, the
executed notebook of the most complete profile available (paper > gpu > cpu > smoke) to
``book/generated/<name>.ipynb`` and adds a provenance note under its title (profile, device,
commit, seeds, duration). If no result exists for a notebook yet, it is executed once with the
``smoke`` profile through the runner (no GPU, no download). The book itself never executes
notebooks (``execute_notebooks: "off"`` in ``_config.yml``).

``python -m reidlib.runner.book toc`` writes the table of contents (``_toc.yml``) and
``notebooks/order.json`` from the pages' records (:data:`reidlib.ablations.EXPERIMENTS`) and the
hand-written pages of :data:`PARTS`; ``toc --check`` only says whether they are up to date.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from reidlib.ablations import EXPERIMENTS, experiment
from reidlib.ablations.experiment import FIGURE_METADATA_KEY
from reidlib.runner.notebooks import notebook_order, notebooks_dir
from reidlib.runner.transaction import best_result, run
from reidlib.utils import paths
from reidlib.utils.io import atomic_path, atomic_write_text


def generated_dir() -> Path:
    """``<home>/book/generated``: the pages the book is built from."""
    return paths.home() / "book" / "generated"


def experiment_order() -> list[str]:
    return notebook_order()


def provenance_note(rec: dict) -> str:
    commit = (rec.get("commit") or "unknown")[:10] + (" (uncommitted changes)" if rec.get("dirty") else "")
    seeds = ", ".join(str(s) for s in rec.get("seeds") or [])
    return (f":::{{note}}\nExecuted with profile **{rec.get('profile')}** on {rec.get('device')}, "
            f"commit `{commit}`, seed(s) {seeds}, reidlib {rec.get('reidlib')}, torch {rec.get('torch')}, "
            f"{rec.get('duration_s')} s, finished {rec.get('end')}. Raw numbers: "
            f"`results/{rec.get('profile')}/{rec.get('name')}.json`.\n:::")


def _copy_figure_metadata(template_path: Path, nb) -> None:
    """Alt text and captions (``mystnb`` cell metadata) live in the notebook templates; copy them onto
    the executed notebook's cells with the same source, so older results get today's figure text."""
    import nbformat

    if not template_path.exists():
        return
    template = nbformat.read(template_path, as_version=4)
    meta = {c.source: c.metadata["mystnb"] for c in template.cells if "mystnb" in c.metadata}
    for cell in nb.cells:
        if cell.source in meta:
            cell.metadata["mystnb"] = meta[cell.source]


def _caption_figures(name: str, nb) -> None:
    """Captions and alt text of the figures a page showed (:meth:`reidlib.ablations.experiment.Page.figure`
    marks each figure's output with its name): today's text of the page's record, else the text
    the output carries."""
    try:
        exp = experiment(name)
    except KeyError:
        exp = None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            mark = out.get("metadata", {}).get(FIGURE_METADATA_KEY)
            if not mark:
                continue
            try:
                text = exp.figure_text(mark["figure"])
                caption, alt = text.caption, text.alt
            except (AttributeError, KeyError):
                caption, alt = mark.get("caption", ""), mark.get("alt", "")
            cell.metadata["mystnb"] = {"figure": {"caption": caption}, "image": {"alt": alt}}


def _final_results_dir(source: str, executed: Path) -> str:
    """The injected ``results_dir`` line as the reader can use it: the runner executes each notebook
    in a temporary folder (``results/<profile>/.<name>.run-<pid>-<time>/<name>``, an absolute path
    of the machine that ran it) and moves the folder into place when the run succeeds; the book
    shows that final place, relative to the repository, and says so."""
    import re

    final = f"results/{executed.parent.name}/{executed.stem}"
    pattern = re.compile(r'^results_dir = (["\']).*?\1$', re.M)
    return pattern.sub(f"# (run in a temporary folder, moved here when it finished)\n"
                       f'results_dir = "{final}"', source)


def prepare(names: Optional[list[str]] = None, run_missing: bool = True) -> list[Path]:
    import nbformat

    generated = generated_dir()
    generated.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or experiment_order():
        src = best_result(name)
        if src is None:
            if not run_missing:
                raise FileNotFoundError(f"no executed result for {name} under results/")
            print(f"[book] no result for {name}: executing it with the smoke profile", flush=True)
            run(name, "smoke")
            src = best_result(name)
        rec = json.loads(src.with_suffix(".json").read_text())
        nb = nbformat.read(src, as_version=4)
        _copy_figure_metadata(notebooks_dir() / f"{name}.ipynb", nb)
        _caption_figures(name, nb)
        note = nbformat.v4.new_markdown_cell(provenance_note(rec))
        note.metadata["tags"] = ["provenance"]
        insert_at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
        nb.cells.insert(insert_at, note)
        for cell in nb.cells:  # papermill's injected cell: keep it, but folded
            tags = cell.metadata.get("tags", [])
            if "injected-parameters" in tags or "parameters" in tags:
                cell.metadata["tags"] = sorted(set(tags) | {"hide-input"})
            if "injected-parameters" in tags:
                cell.source = _final_results_dir(cell.source, src)
        dst = generated / f"{name}.ipynb"
        with atomic_path(dst, suffix=".ipynb") as tmp:
            nbformat.write(nb, str(tmp))
        written.append(dst)
        print(f"[book] {name}: {src.relative_to(paths.home())}", flush=True)
    return written


# ------------------------------------------------------------------------------------------------
# the table of contents, from the records
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """A part of the book: its caption, the records of ``chapter`` (in book order) and the
    hand-written pages around them: ``before`` and ``after`` them, or ``parent``, the chapter the
    records are sections of."""

    chapter: str
    caption: str
    before: tuple = ()
    after: tuple = ()
    parent: Optional[str] = None


#: the book's parts, in order (the hand-written pages live in ``book/``)
PARTS = (
    Part("benchmark", "The benchmark", before=("book/verdicts",), after=("book/departures",)),
    Part("span", "SPAN + CPDM (ECCV 2020)", parent="book/span"),
    Part("musp", "MUSP", parent="book/musp"),
    Part("across", "Across both papers", after=("book/own_data", "book/distributed")),
)
ROOT_PAGE = "book/intro"
_TOC_HEADER = """# Table of contents (Jupyter Book 1.x). Experiment pages live in book/generated/, written by
# `python -m reidlib.runner.book prepare` from the executed notebooks in results/.
format: jb-book
root: {root}
parts:
"""


def toc_text(experiments: Sequence = EXPERIMENTS, parts: Sequence[Part] = PARTS) -> str:
    """``_toc.yml`` for ``experiments`` (each in the part of its ``chapter``) and ``parts``."""
    known = {p.chapter for p in parts}
    stray = [e.name for e in experiments if e.chapter not in known]
    if stray:
        raise ValueError(f"experiments {stray} belong to no part of the book ({sorted(known)})")
    lines = [_TOC_HEADER.format(root=ROOT_PAGE).rstrip("\n")]
    for part in parts:
        pages = [f"book/generated/{e.name}" for e in experiments if e.chapter == part.chapter]
        lines += [f"  - caption: {part.caption}", "    chapters:"]
        if part.parent:
            lines += [f"      - file: {part.parent}", "        sections:"]
            lines += [f"          - file: {page}" for page in pages]
        lines += [f"      - file: {page}" for page in (*part.before, *([] if part.parent else pages), *part.after)]
    return "\n".join(lines) + "\n"


def order_text(experiments: Sequence = EXPERIMENTS) -> str:
    """``notebooks/order.json``: the notebooks in book order."""
    return json.dumps([e.name for e in experiments])


def toc_files() -> dict[Path, str]:
    """Each generated file and the text it must hold."""
    return {paths.home() / "_toc.yml": toc_text(), notebooks_dir() / "order.json": order_text()}


def write_toc(check: bool = False) -> list[Path]:
    """Write ``_toc.yml`` and ``notebooks/order.json`` from the records; returns the files that
    were out of date (with ``check``: only list them)."""
    files = toc_files()
    stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
    if not check:
        for path in stale:
            atomic_write_text(path, files[path])
    return stale


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reidlib.runner.book")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="copy the best executed notebooks into book/generated/")
    p.add_argument("names", nargs="*")
    p.add_argument("--no-run", action="store_true", help="fail instead of executing missing notebooks")
    t = sub.add_parser("toc", help="write _toc.yml and notebooks/order.json from the pages' records")
    t.add_argument("--check", action="store_true", help="only report whether they are up to date (exit 1 if not)")
    args = parser.parse_args(argv)
    if args.cmd == "toc":
        stale = write_toc(check=args.check)
        for path in stale:
            print(f"[book] {'out of date' if args.check else 'wrote'}: {path.relative_to(paths.home())}", flush=True)
        return 1 if args.check and stale else 0
    prepare(args.names or None, run_missing=not args.no_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
