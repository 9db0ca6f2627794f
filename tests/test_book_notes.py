"""What the book says about where its numbers come from: the note under every page's title and
the first screen's outcome, for pages that only the smoke profile has run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _record(profile: str) -> dict:
    return {"name": "span_losses", "profile": profile, "device": "cpu (x86_64, 2 logical cores)", "seeds": [0],
            "commit": "0123456789abcdef", "reidlib": "0.1", "torch": "2.15.0", "duration_s": 12.0,
            "end": "2026-12-02T00:00:00"}


def test_a_smoke_page_is_flagged_as_not_run_at_a_real_budget():
    from reidlib.runner.book import provenance_note

    smoke, cpu = provenance_note(_record("smoke")), provenance_note(_record("cpu"))
    assert smoke.startswith(":::{warning}\n**Not yet run at a real budget**") and "profile **smoke**" in smoke
    assert cpu.startswith(":::{note}\nExecuted with profile **cpu**") and "Not yet run" not in cpu


def test_the_outcome_names_the_pages_the_profile_has_not_run(tmp_path):
    from reidlib.ablations import experiment
    from reidlib.runner.book import experiment_order, outcome_markdown

    shutil.copytree(ROOT / "results" / "smoke", tmp_path / "smoke")
    complete = outcome_markdown(tmp_path)
    assert "Not yet run" not in complete and "Every number is from the **smoke** profile" in complete
    assert "**Would a longer schedule change that?** {doc}`Trained 4x longer <generated/schedule>`" in complete
    (tmp_path / "smoke" / "viewpoints.json").unlink()
    partial = outcome_markdown(tmp_path)
    title = experiment("viewpoints").title
    assert f"Not yet run at the smoke profile: {{doc}}`{title} <generated/viewpoints>`" in partial
    assert "Every number on the other pages is from the **smoke** profile" in partial
    assert set(experiment_order()) - {"viewpoints"} <= {p.stem for p in (tmp_path / "smoke").glob("*.json")}
    assert json.loads((tmp_path / "smoke" / "summary.json").read_text())["profile"] == "smoke"


def test_a_page_states_the_budget_its_record_kept_never_todays_profile(monkeypatch):
    from reidlib.runner.book import UNRECORDED_BUDGET, budget_description, data_description
    from reidlib.runner.provenance import provenance
    from reidlib.study.profiles import PROFILES

    rec = provenance("cpu", {"seed": 0})
    assert rec["profile_settings"]["reid_iters"] == PROFILES["cpu"].reid_iters
    then = {**rec, "profile_settings": {**rec["profile_settings"], "reid_iters": 500, "pretrain_iters": 20000}}
    text = budget_description(then)
    assert "re-ID models 500 iterations" in text and "stand-in 20000 iterations" in text
    assert budget_description({"profile": "cpu"}) == UNRECORDED_BUDGET        # an older record
    assert "`small` preset, 128 px" in data_description(rec)
    assert "its profile's preset" in data_description({"profile": "cpu", "parameters": {"seed": 0}})


def test_the_summary_quotes_each_pages_recorded_budget():
    from reidlib.ablations.summary import UNRECORDED, why_ours_may_differ
    from reidlib.study.profiles import PROFILES

    row = {"verdict": "inconclusive", "seeds": 1, "metric": "mAP"}
    settings = {**PROFILES["cpu"].to_dict(), "reid_iters": 777}
    assert "for 777 iterations" in why_ours_may_differ(row, "musp_ese", "cpu", settings=settings)
    old = why_ours_may_differ(row, "musp_ese", "cpu", settings=UNRECORDED)
    assert "not in its older record" in old and f"{PROFILES['cpu'].reid_iters} iterations" not in old
    assert f"for {PROFILES['cpu'].reid_iters} iterations" in why_ours_may_differ(row, "musp_ese", "cpu")


def test_the_first_screen_says_when_pages_ran_at_different_budgets(tmp_path):
    from reidlib.runner.book import outcome_markdown

    from reidlib.study.profiles import PROFILES

    shutil.copytree(ROOT / "results" / "smoke", tmp_path / "smoke")
    for rec_path in (tmp_path / "smoke").glob("*.json"):
        rec = json.loads(rec_path.read_text())
        rec["profile_settings"] = PROFILES["smoke"].to_dict()
        if rec_path.stem == "span_losses":                             # one page from an older record
            rec.pop("profile_settings")
        rec_path.write_text(json.dumps(rec, default=list))
    text = outcome_markdown(tmp_path)
    assert "at 2 different budgets: each page's note states its own" in text
    (tmp_path / "smoke" / "span_losses.json").unlink()
    assert "(input 64 x 64 px, re-ID models 4 iterations" in outcome_markdown(tmp_path)


def test_the_note_names_the_cpu_model_and_the_precision_that_built_the_numbers():
    """bf16 kernels differ between CPUs: a page built on another machine must say which."""
    from reidlib.runner.book import machine_description, provenance_note, rerun_box

    rec = {**_record("cpu"), "cpu": "AMD EPYC", "precision": "bf16-autocast"}
    assert machine_description(rec) == "cpu (x86_64, 2 logical cores; AMD EPYC; bfloat16 autocast)"
    assert "on cpu (x86_64, 2 logical cores; AMD EPYC; bfloat16 autocast): data" in provenance_note(rec)
    assert "AMD EPYC" in rerun_box(rec)
    gpu = {**_record("gpu"), "device": "cuda (NVIDIA H200)", "cpu": "AMD EPYC", "precision": "fp32"}
    assert machine_description(gpu) == "cuda (NVIDIA H200; float32)"      # the host CPU is not the device
    assert machine_description(_record("cpu")) == "cpu (x86_64, 2 logical cores)"   # an older record


def test_a_run_with_fewer_threads_than_cores_says_so_beside_its_time():
    """Two notebooks side by side, one thread each: each page's time is not the page alone on the machine."""
    from reidlib.runner.book import provenance_note, rerun_box, thread_description

    one = {**_record("cpu"), "torch_threads": 1, "duration_s": 3771.2}
    assert thread_description(one) == " with 1 compute thread of 2 cores"
    assert "3771.2 s with 1 compute thread of 2 cores" in provenance_note(one)
    assert "min** on cpu (x86_64, 2 logical cores) with 1 compute thread" in rerun_box(one)
    assert thread_description({**one, "torch_threads": 2}) == ""
    assert thread_description(_record("cpu")) == ""          # an older record without the count


def test_the_first_screen_says_when_summed_page_times_overlap(tmp_path):
    """Pages timed at fewer threads than cores may have run side by side: their sum is not wall time."""
    from reidlib.runner.book import outcome_markdown

    shutil.copytree(ROOT / "results" / "smoke", tmp_path / "smoke")
    assert "fewer compute threads" not in outcome_markdown(tmp_path)
    rec_path = tmp_path / "smoke" / "span_losses.json"
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps({**rec, "torch_threads": 1, "device": "cpu (x86_64, 2 logical cores)"}))
    assert "; 1 of them ran with fewer compute threads than the machine's cores" in outcome_markdown(tmp_path)


def test_pages_from_several_machines_and_commits_are_counted_not_attributed_to_one(tmp_path):
    from reidlib.runner.book import outcome_markdown, provenance_note

    shutil.copytree(ROOT / "results" / "smoke", tmp_path / "smoke")
    one = outcome_markdown(tmp_path)
    rec_path = tmp_path / "smoke" / "span_losses.json"
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps({**rec, "commit": "f" * 40, "cpu": "Another CPU"}))
    two = outcome_markdown(tmp_path)
    assert " machines at " in two and " commits (each page's note names its own)" in two
    assert "summed over" in one and "summed over" in two
    from reidlib.study.profiles import PROFILES

    summary = {**_record("cpu"), "name": "summary", "profile_settings": {**PROFILES["cpu"].to_dict(), "reid_iters": 999}}
    assert "trains no model" in provenance_note(summary) and "999" not in provenance_note(summary)
