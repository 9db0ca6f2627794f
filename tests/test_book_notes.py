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
    (tmp_path / "smoke" / "viewpoints.json").unlink()
    partial = outcome_markdown(tmp_path)
    title = experiment("viewpoints").title
    assert f"Not yet run at the smoke profile: {{doc}}`{title} <generated/viewpoints>`" in partial
    assert "Every number on the other pages is from the **smoke** profile" in partial
    assert set(experiment_order()) - {"viewpoints"} <= {p.stem for p in (tmp_path / "smoke").glob("*.json")}
    assert json.loads((tmp_path / "smoke" / "summary.json").read_text())["profile"] == "smoke"
