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
import re
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


#: the files of a page's results a reader can download from the page (when the run wrote them)
DOWNLOADS = ("table.csv", "claims.csv", "comparisons.csv", "per_query.npz")


def data_description(rec: dict) -> str:
    """What data a run used, from its record: SynthVeRi (preset, image size, data seed, layout) or
    the user's ``data_root`` with its dataset and test set."""
    params = rec.get("parameters") or {}
    dataset = params.get("dataset") or "veri776"
    test = f", test set {params['test_size']}" if params.get("test_size") not in (None, "") else ""
    if params.get("data_root"):
        return f"{dataset} at `{params['data_root']}`{test}"
    prof = rec.get("profile_settings")
    preset = f"`{prof['synth_preset']}` preset, {prof['image_size']} px" if prof else "its profile's preset"
    seed = (rec.get("seeds_by_meaning") or {}).get("data_seed", params.get("seed"))
    return f"SynthVeRi (synthetic; {preset}, data seed {seed}) in the {dataset} layout and protocol{test}"


#: what a page says of its budget when its record predates ``profile_settings``
UNRECORDED_BUDGET = "budget not in this older record (its profile has changed since)"


def budget_description(rec: dict) -> str:
    """Input size and training budget of the run (what every row of the page trained with), from the
    profile's settings its record kept (``profile_settings``, :func:`reidlib.runner.provenance.provenance`);
    :data:`UNRECORDED_BUDGET` for an older record, never today's profile in its place."""
    prof = rec.get("profile_settings")
    if not prof:
        return UNRECORDED_BUDGET
    h, w = prof["input_size"]
    return (f"input {h} x {w} px, re-ID models {prof['reid_iters']} iterations at P x K = {prof['batch_p']} x "
            f"{prof['batch_k']} ({prof['reid_backbone']}), SPAN step 1 {prof['span_iters']} iterations "
            f"({prof['span_backbone']}), stand-in {prof['pretrain_iters']} iterations")


def machine_description(rec: dict) -> str:
    """The machine a record ran on, with what changes its numbers between machines: the CPU model and
    the compute precision (bf16 kernels differ between CPUs, so two CPUs' runs are not bit-identical)."""
    device = str(rec.get("device") or "an unrecorded device")
    extra = [str(rec["cpu"])] if rec.get("cpu") and str(device).startswith("cpu") else []
    precision = rec.get("precision")
    if precision:
        extra.append({"bf16-autocast": "bfloat16 autocast", "fp32": "float32"}.get(str(precision), str(precision)))
    if not extra:
        return device
    if device.endswith(")"):                       # "cpu (x86_64, 2 logical cores)": one parenthesis
        return f"{device[:-1]}; {'; '.join(extra)})"
    return f"{device} ({'; '.join(extra)})"


def thread_description(rec: dict) -> str:
    """How many compute threads the run had, when it had fewer than the machine's cores (e.g. two
    notebooks run side by side, one thread each): its time is then not the page alone on the whole
    machine. Empty when it had every core or the record does not say."""
    threads = rec.get("torch_threads")
    cores = re.search(r"(\d+) logical cores?", str(rec.get("device") or ""))
    if not threads or not cores or int(threads) >= int(cores.group(1)):
        return ""
    return f" with {int(threads)} compute thread{'s' if int(threads) != 1 else ''} of {cores.group(1)} cores"


def provenance_note(rec: dict, downloads: Sequence[str] = ()) -> str:
    """The note under a page's title: what produced its numbers (data, budget, seeds, code, machine,
    time) and the files behind them (``downloads``: paths relative to the page). A page only the
    ``smoke`` profile has run gets a warning instead, saying its numbers mean nothing yet."""
    changed = rec.get("dirty_paths") or []
    if rec.get("dirty"):
        dirty = (" with uncommitted changes to " + ", ".join(f"`{p}`" for p in changed[:8])
                 + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")) if changed \
            else " with uncommitted changes (not listed by this older record)"
    else:
        dirty = ""
    commit = f"`{(rec.get('commit') or 'unknown')[:10]}`{dirty}"
    seeds = ", ".join(str(s) for s in rec.get("seeds") or [])
    budget = ("this page trains no model (its numbers come from the data or from the pages it reads, each "
              "at its own budget)" if rec.get("name") in PAGES_THAT_TRAIN_NOTHING else budget_description(rec))
    files = [f"[`{Path(d).name}`]({d})" for d in downloads]
    smoke = rec.get("profile") == "smoke"
    lead = ("**Not yet run at a real budget**: only the `smoke` profile (a few iterations on a tiny SynthVeRi) "
            "has run this page, so its numbers show that the code runs, nothing about the papers. ") if smoke else ""
    return (f":::{{{'warning' if smoke else 'note'}}}\n{lead}Executed with profile **{rec.get('profile')}** on "
            f"{machine_description(rec)}: data "
            f"{data_description(rec)}; {budget + '; ' if budget else ''}training seed(s) {seeds}; commit "
            f"{commit}, reidlib {rec.get('reidlib')}, torch {rec.get('torch')}; {rec.get('duration_s')} s{thread_description(rec)}, "
            f"finished {rec.get('end')}. Raw numbers: " + ", ".join(files or [f"`results/{rec.get('profile')}/"
                                                                         f"{rec.get('name')}.json`"]) + ".\n:::")


#: pages that read data or other pages' results and train no model
PAGES_THAT_TRAIN_NOTHING = ("synthveri", "summary")


def rerun_box(rec: dict) -> str:
    """How to re-run the page: the exact commands for each profile and for one's own data, with the
    measured time of the committed run (the GPU time is not measured until a GPU run exists: the box points
    to the counted estimate of :mod:`reidlib.study.cost`)."""
    name, profile = rec.get("name"), rec.get("profile")
    minutes = (rec.get("duration_s") or 0) / 60
    where = machine_description(rec)
    run = "python -m reidlib.runner run"
    return (f":::{{admonition}} Re-run this page\n:class: dropdown\n"
            f"After `make setup` (it creates `.venv`; put `.venv/bin` first on `PATH`), from the "
            f"repository root:\n\n"
            f"```bash\n"
            f"# 2 CPU cores; one GPU; your own data\n"
            f"{run} {name} --profile cpu\n"
            f"{run} {name} --profile gpu\n"
            f"{run} {name} --profile paper \\\n"
            f"    -p data_root=/data/VeRi \\\n"
            f"    -p init=/data/resnet50.pth \\\n"
            f"    -p span_init=/data/resnet34.pth\n"
            f"```\n\n"
            f"The committed run ({profile}) took **{minutes:.1f} min** on {where}{thread_description(rec)}"
            + (" (this page trains nothing). " if name in PAGES_THAT_TRAIN_NOTHING else
               ", its trained models included unless the run cache already held them (a page reuses the "
               "models of earlier pages). ") +
            f"GPU time: not measured (no page has run on a GPU); {{doc}}`What it costs <../own_data>` "
            f"estimates each model's GPU minutes and memory from its counted FLOPs. Results land in "
            f"`results/<profile>/{name}.json` and `results/<profile>/{name}/`; `make book` builds the "
            f"book from the most complete profile present. Own data: see *Use your own data*.\n:::")


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


def copy_downloads(executed: Path, dest: Path) -> list[str]:
    """Copy the run's record (``NAME.json``) and :data:`DOWNLOADS` from its results folder into
    ``dest`` (beside the page, so the book links them and Sphinx ships them with the HTML);
    returns the names copied."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    files = [executed.with_suffix(".json")] + [executed.with_suffix("") / d for d in DOWNLOADS]
    out = []
    for f in files:
        if f.is_file():
            with atomic_path(dest / f.name, suffix=f.suffix) as tmp:
                shutil.copyfile(f, tmp)
            out.append(f.name)
    return out


#: the chapters whose page lists are generated (``book/generated/pages-<chapter>.md``, included by
#: ``book/<chapter>.md``): which page reproduces which table or figure of the paper
CHAPTER_PAGES = ("span", "musp")


def chapter_pages(chapter: str, experiments: Sequence = EXPERIMENTS) -> str:
    """A Markdown table of the chapter's pages: the paper's table or figure each reproduces, and the
    page (from the records, so it cannot drift from them)."""
    rows = ["| the paper's | page |", "|---|---|"]
    for exp in experiments:
        if exp.chapter == chapter:
            rows.append(f"| {exp.source or 'our addition'} | {{doc}}`{exp.title} <generated/{exp.name}>` |")
    return "\n".join(rows) + "\n"


def write_chapter_pages(generated: Optional[Path] = None) -> list[Path]:
    out = []
    generated = generated or generated_dir()
    generated.mkdir(parents=True, exist_ok=True)
    for chapter in CHAPTER_PAGES:
        path = generated / f"pages-{chapter}.md"
        atomic_write_text(path, chapter_pages(chapter))
        out.append(path)
    return out


def page_minutes(results: Path) -> dict:
    """``{page: minutes}`` of the committed run in ``results`` (each page's ``duration_s``), in the
    book's order."""
    out = {}
    for name in experiment_order():
        path = Path(results) / f"{name}.json"
        if path.is_file():
            d = json.loads(path.read_text()).get("duration_s")
            if d is not None:
                out[name] = float(d) / 60
    return out


def _where_and_when(records: Sequence[dict]) -> str:
    """"on MACHINE at commit C", or how many machines and commits the pages ran on when they differ."""
    machines = dict.fromkeys(machine_description(r) for r in records)
    commits = dict.fromkeys((r.get("commit") or "unknown")[:10] for r in records)
    where = f"on {next(iter(machines))}" if len(machines) == 1 else f"on {len(machines)} machines"
    when = f"at commit `{next(iter(commits))}`" if len(commits) == 1 else f"at {len(commits)} commits"
    return where + " " + when + ("" if len(machines) == len(commits) == 1 else " (each page's note names its own)")


def outcome_markdown(results_root: Optional[Path] = None) -> str:
    """The book's first screen (``book/generated/outcome.md``, included by the intro): what the most
    complete results present say, counted over distinct comparisons from their per-query files
    (:func:`reidlib.ablations.summary.summarise`, the summary page's own computation), with the
    profile, data and budget that produced them, and one line per paper."""
    from reidlib.ablations.summary import summarise
    from reidlib.claims.verdicts import OUTCOMES
    from reidlib.runner.notebooks import PROFILE_ORDER, results_root as _root

    root = Path(results_root) if results_root else _root()
    profile = next((p for p in PROFILE_ORDER if (root / p / "summary.json").is_file()), None)
    if profile is None:
        return ":::{note}\nNo results yet: run `make reproduce` (or `make book`, which runs what is missing).\n:::\n"
    rec = json.loads((root / profile / "summary.json").read_text())
    summary = summarise(root / profile, EXPERIMENTS)
    v = summary.distinct()
    v = v[v["stated"].astype(bool)]
    source = v["source"] if "source" in v else ["paper"] * len(v)
    paper = v[[s == "paper" for s in source]]

    def counts(sel) -> str:
        parts = [f"**{int((sel['verdict'] == o).sum())} {o}**" for o in OUTCOMES if (sel["verdict"] == o).any()]
        return ", ".join(parts) or "none measured"

    lines = [f"**The outcome, in short.** Of the papers' claims, {len(paper)} distinct comparisons: "
             f"{counts(paper)}. Our additional tests: {counts(v[[s == 'ours' for s in source]])}."]
    for name in dict.fromkeys(paper["paper"]) if "paper" in paper else []:
        sel = paper[paper["paper"] == name]
        lines.append(f"- *{name}*: {counts(sel)}.")
    if (root / profile / "schedule.json").is_file():
        from reidlib.ablations.schedule import schedule_outcome

        lines.append("\n" + schedule_outcome(json.loads((root / profile / "schedule.json").read_text())))
    records = [json.loads((root / profile / f"{n}.json").read_text()) for n in experiment_order()
               if (root / profile / f"{n}.json").is_file()]
    budgets = dict.fromkeys(budget_description(r) for r in records)
    budget = next(iter(budgets)) if len(budgets) == 1 else \
        f"at {len(budgets)} different budgets: each page's note states its own"
    times = page_minutes(root / profile)
    if times:
        longest = max(times, key=times.get)
        lines.append(f"\nThe committed {profile} pages took **{sum(times.values()):.0f} min** in all, summed over "
                     f"{len(times)} pages each timed in its own run (a page's time leaves out the models an "
                     f"earlier page had already trained; the longest, {longest}, {times[longest]:.0f} min; each "
                     f"page's time is in its *Re-run this page* box)"
                     + (f"; {fewer} of them ran with fewer compute threads than the machine's cores, so their "
                        f"times are not the page alone on the machine" if (fewer := sum(
                            bool(thread_description(r)) for r in records if r.get("name") in times)) else "")
                     + ".")
    missing = [n for n in experiment_order() if not (root / profile / f"{n}.json").is_file()]
    lines.append(f"\nEvery number{' on the other pages' if missing else ''} is from the **{profile}** profile ({budget}) on "
                 f"{data_description(rec)}, run {_where_and_when(records or [rec])}: what a small synthetic "
                 f"setup can tell about "
                 f"the papers' ideas, not a replication of their real-data numbers. "
                 f"{{doc}}`The summary <generated/summary>` lists each claim, and each page says why a "
                 f"verdict may differ from the paper's.")
    if missing:
        lines.insert(-1, f"\nNot yet run at the {profile} profile: "
                     + ", ".join(f"{{doc}}`{experiment(n).title} <generated/{n}>`" for n in missing)
                     + f" (each shows the most complete profile that ran it, and its note says which).")
    return "\n".join(lines) + "\n"


def prepare(names: Optional[list[str]] = None, run_missing: bool = True) -> list[Path]:
    import nbformat

    generated = generated_dir()
    generated.mkdir(parents=True, exist_ok=True)
    written = write_chapter_pages(generated)
    atomic_write_text(generated / "outcome.md", outcome_markdown())
    written.append(generated / "outcome.md")
    from reidlib.study.cost import costs_markdown   # counted on the meta device: seconds, no GPU

    atomic_write_text(generated / "costs.md", costs_markdown())
    written.append(generated / "costs.md")
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
        downloads = copy_downloads(src, generated / "downloads" / name)
        note = nbformat.v4.new_markdown_cell(provenance_note(rec, [f"downloads/{name}/{d}" for d in downloads]))
        note.metadata["tags"] = ["provenance"]
        box = nbformat.v4.new_markdown_cell(rerun_box(rec))
        box.metadata["tags"] = ["rerun"]
        insert_at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
        nb.cells[insert_at:insert_at] = [note, box]
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
