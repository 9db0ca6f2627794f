"""One record per book page (:mod:`reidlib.ablations`): every notebook has one and names it once,
the book's table of contents and notebook order are generated from them, and the page template
(:class:`reidlib.ablations.experiment.Page`) runs on constructed results, without training."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from reidlib.ablations import CLAIMS, EXPERIMENTS, experiment
from reidlib.ablations.experiment import FIGURE_METADATA_KEY, Experiment, FigureText, Page
from reidlib.claims.verdicts import beats, reid_claim
from reidlib.study import Results, Variant

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


# ---------------------------------------------------------------------------------------------
# the records
# ---------------------------------------------------------------------------------------------

def test_every_record_has_a_notebook_and_every_notebook_a_record():
    assert sorted(e.name for e in EXPERIMENTS) == sorted(p.stem for p in NOTEBOOKS)
    assert len({e.name for e in EXPERIMENTS}) == len(EXPERIMENTS)


def test_titles_are_unique_and_parts_known():
    titles = [e.title for e in EXPERIMENTS]
    assert len(set(titles)) == len(titles), titles
    assert {e.chapter for e in EXPERIMENTS} <= {"benchmark", "span", "musp", "across"}
    assert {e.paper for e in EXPERIMENTS} <= {"SPAN + CPDM", "MUSP", ""}


@pytest.mark.parametrize("exp", [e for e in EXPERIMENTS if e.claims], ids=lambda e: e.name)
def test_every_claim_compares_rows_of_its_page(exp):
    rows = {str(r) for r in exp.rows}
    assert rows, f"{exp.name} makes claims but has no rows"
    for claim in exp.claims:
        assert {str(r) for r in claim.rows()} <= rows, (claim.text, sorted(rows))


def test_paper_numbers_are_rows_of_the_page():
    for exp in EXPERIMENTS:
        assert set(exp.paper_numbers) <= set(exp.rows), exp.name


def test_claim_texts_are_unique_across_the_book():
    texts = [c.text for c in CLAIMS]
    assert len(set(texts)) == len(texts)


def test_lookup_by_name():
    assert experiment("span_aggregation").title == "SPAN Table 2: global and part features"
    with pytest.raises(KeyError, match="span_aggregation"):
        experiment("nope")


def test_records_are_read_only():
    exp = experiment("span_losses")
    with pytest.raises(TypeError):
        exp.variants["extra"] = Variant("baseline")      # type: ignore[index]
    with pytest.raises(AttributeError):
        exp.title = "another"                             # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# the notebooks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_names_its_record_once(path):
    nb = nbformat.read(str(path), as_version=4)
    code = "\n".join(_code(nb))
    assert len(re.findall(r"\bas EXPERIMENT\b", code)) == 1, "import the record once, `... import X as EXPERIMENT`"
    setup = next(c for c in nb.cells if "as EXPERIMENT" in c.source)
    assert "hide-input" in setup.metadata.get("tags", [])
    body = "\n".join(c for c in _code(nb) if "parameters" not in c)
    assert f'"{path.stem}"' not in body and f"'{path.stem}'" not in body, "the page's name typed again"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_headings_are_not_repeated(path):
    """A template copied twice shows one heading over two different outputs."""
    nb = nbformat.read(str(path), as_version=4)
    heads = [line.strip() for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
             if line.startswith("#")]
    assert len(heads) == len(set(heads)), heads


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_figures_are_captioned_by_the_record(path):
    """Captions live in the record: no notebook types one, and every figure a notebook shows is one
    its record captions."""
    nb = nbformat.read(str(path), as_version=4)
    exp = experiment(path.stem)
    assert not [c for c in nb.cells if "mystnb" in c.metadata], "captions belong in the record"
    code = "\n".join(_code(nb))
    shown = re.findall(r'page\.figure\(\s*"([^"]+)"', code)
    shown += [m for m in ("intervals", "learning_curves") if f"page.{m}(" in code]
    for name in shown:
        exp.figure_text(name)
    assert len(shown) == len(set(shown)), shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_hidden_cells_keep_their_tags(path):
    nb = nbformat.read(str(path), as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert tags.count(["parameters"]) == 1
    assert ["remove-cell", "test"] in tags and ["remove-cell"] in tags
    test_cell = nb.cells[tags.index(["remove-cell", "test"])].source
    assert "page.check(" in test_cell
    assert "page.record(" in nb.cells[tags.index(["remove-cell"])].source


# ---------------------------------------------------------------------------------------------
# the book's table of contents and order, from the records
# ---------------------------------------------------------------------------------------------

def test_committed_toc_and_order_are_the_generated_ones():
    from reidlib.runner.book import order_text, toc_text

    assert (ROOT / "_toc.yml").read_text() == toc_text(), "run `python -m reidlib.runner.book toc`"
    assert (ROOT / "notebooks" / "order.json").read_text() == order_text(), "run `python -m reidlib.runner.book toc`"
    assert json.loads(order_text()) == [e.name for e in EXPERIMENTS]


def test_toc_places_each_record_in_its_part():
    from reidlib.runner.book import toc_text

    extra = Experiment("extra_page", "An extra page", "musp")
    toc = toc_text(EXPERIMENTS + (extra,))
    musp = toc.split("- caption: MUSP")[1].split("- caption:")[0]
    assert "book/generated/extra_page" in musp and "sections:" in musp
    with pytest.raises(ValueError, match="no part"):
        toc_text((Experiment("stray", "Stray", "nowhere"),))


def test_toc_command_checks_and_writes(tmp_path, monkeypatch, capsys):
    from reidlib.runner import book

    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv("REIDLIB_HOME", str(tmp_path))
    assert book.main(["toc", "--check"]) == 1
    assert book.main(["toc"]) == 0
    assert (tmp_path / "_toc.yml").read_text() == (ROOT / "_toc.yml").read_text()
    assert (tmp_path / "notebooks" / "order.json").read_text() == (ROOT / "notebooks" / "order.json").read_text()
    assert book.main(["toc", "--check"]) == 0


def test_the_book_captions_a_figure_from_the_record():
    from reidlib.runner.book import _caption_figures

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('page.figure("intervals", fig)')
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>"},
                                           metadata={FIGURE_METADATA_KEY: {"figure": "intervals",
                                                                           "caption": "old", "alt": "old"}})]
    nb.cells.append(cell)
    _caption_figures("span_aggregation", nb)
    want = experiment("span_aggregation").figures["intervals"]
    assert cell.metadata["mystnb"] == {"figure": {"caption": want.caption}, "image": {"alt": want.alt}}
    _caption_figures("not_a_page", nb)                    # unknown page: the text the output carries
    assert cell.metadata["mystnb"]["figure"]["caption"] == "old"


# ---------------------------------------------------------------------------------------------
# the page template on constructed results
# ---------------------------------------------------------------------------------------------

def _fake_results(tmp_path: Path, rows=("baseline", "span_cpdm"), n=60) -> Results:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.7, n)
    runs = {}
    for k, row in enumerate(rows):
        rr = type("RR", (), {})()
        rr.query_ap = np.clip(base + 0.05 * k, 0, 1)
        rr.query_inp = rr.query_ap / 2
        rr.query_first_rank = rng.integers(0, 3, n)
        run_dir = tmp_path / f"run-{row}"
        run_dir.mkdir()
        (run_dir / "log.jsonl").write_text("".join(json.dumps({"iter": i, "loss": 2.0 - i, "acc": 0.1 * i}) + "\n"
                                                   for i in range(3)))
        ap, fr = float(rr.query_ap.mean() * 100), rr.query_first_rank
        runs[row] = [{"rank_result": rr, "query": {"paths": [f"q{i}.jpg" for i in range(n)]},
                      "R1": float((fr < 1).mean() * 100), "R5": float((fr < 5).mean() * 100), "mAP": ap,
                      "mINP": ap / 2, "run_dir": str(run_dir)}]
    return Results(runs, [0])


class _FakeStudy:
    def __init__(self, results):
        self.results, self.ran = results, []

    def run(self, variants):
        self.ran.append(list(variants))
        return self.results

    def reference_levels(self):
        return pd.DataFrame({"R1": [5.0], "R5": [10.0], "mAP": [3.0], "mINP": [1.0]}, index=["untrained network"])


_TOY = Experiment(
    "toy", "A toy table", "span", "SPAN + CPDM", "Table 0",
    {"baseline": Variant("baseline", note="the baseline"), "span_cpdm": Variant("span", distance="cpdm")},
    paper_numbers={"baseline": {"R1": 92.0, "mAP": 59.1}, "span_cpdm": {"R1": 94.0, "mAP": 68.9}},
    claims=(reid_claim("SPAN w/ CPDM beats the baseline", "mAP", beats("span_cpdm", "baseline")),),
    figures={"intervals": FigureText("Toy rows.", "mAP and rank-1 of the toy rows")})


def test_the_page_template_runs_without_training(tmp_path):
    results = _fake_results(tmp_path)
    study = _FakeStudy(results)
    page = Page(_TOY, study)
    design = page.design().data
    assert list(design["row"]) == ["baseline", "span_cpdm"]
    assert page.run() is results and study.ran == [["baseline", "span_cpdm"]]
    table = results.table(resamples=200)
    shown = page.intervals(table)
    assert shown.text.caption == "Toy rows." and "levels" in page.tables
    assert page.learning_curves(results).text.caption.startswith("Did every model train to a plateau?")
    against = page.against_paper(table)
    assert against.loc["span_cpdm", "paper mAP"] == 68.9
    verdicts = page.claims(results).data
    assert list(verdicts["claim"]) == ["SPAN w/ CPDM beats the baseline"] * 2
    assert verdicts["paper"].tolist() == ["+9.8", "+2.0"]
    out = tmp_path / "results"
    page.record(out, table, arrays=results.arrays(), note="toy")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["note"] == "toy" and metrics["tables"] == ["table", "levels", "claims", "comparisons"]
    assert {p.name for p in out.glob("*.png")} == {"intervals.png", "learning_curves.png"}
    assert (out / "per_query.npz").is_file()
    assert page.check(out, table) == "toy: checks passed"
    with pytest.raises(AssertionError, match="rows"):
        page.check(out, table.drop(index="baseline"))


def test_a_page_refuses_a_figure_its_record_does_not_caption(tmp_path):
    page = Page(_TOY, _FakeStudy(_fake_results(tmp_path)))
    with pytest.raises(KeyError, match="no caption for figure 'attention_maps'"):
        page.figure("attention_maps", object())


def test_a_page_without_a_table_records_its_metrics(tmp_path):
    page = Page(Experiment("plain", "A plain page", "across"))
    page.record(tmp_path, answer=42, tables={"t": pd.DataFrame({"a": [1]})})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"answer": 42, "tables": ["t"]}
    assert page.check(tmp_path) == "plain: checks passed"


def test_a_shown_figure_carries_its_name_to_the_book():
    """In a kernel the figure is shown as matplotlib shows it, its output marked with the figure's
    name, caption and alt text."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1])
    shown = Page(_TOY).figure("intervals", fig)
    assert shown._repr_mimebundle_() is None or InteractiveShell.initialized()      # no kernel: nothing
    shell = InteractiveShell.instance()
    try:
        select_figure_formats(shell, {"png"})                # what %matplotlib inline sets up
        data, metadata = shell.display_formatter.format(shown)
    finally:
        InteractiveShell.clear_instance()
    assert "image/png" in data and data["image/png"] == shell.display_formatter.format(fig)[0]["image/png"]
    assert metadata[FIGURE_METADATA_KEY] == {"figure": "intervals", "caption": "Toy rows.",
                                             "alt": "mAP and rank-1 of the toy rows"}
