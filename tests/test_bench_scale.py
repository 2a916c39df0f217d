"""``dlhpc bench scale`` on a tiny twin: real runs, a report with ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlhpc.bench.scale import Config, configs, run_scale, write_report


def test_the_plan_covers_threads_ranks_and_weak_scaling() -> None:
    plan = configs(2, 64)
    assert Config("strong", 1, 1, 64) in plan and Config("strong", 1, 2, 64) in plan
    assert Config("strong", 2, 1, 64) in plan and Config("weak", 2, 1, 128) in plan


@pytest.mark.slow
def test_scale_twin_writes_a_report(tmp_path: Path) -> None:
    result = run_scale("mlp", "digits", epochs=1, batch=64, repeats=1, target=0.5, max_ranks=2)
    rows = {(r["mode"], r["ranks"], r["threads"]): r for r in result["rows"]}
    assert rows[("strong", 1, 1)]["speedup"] == 1.0
    assert all(r["samples_per_second"] > 0 and 0 < r["test_accuracy"] <= 1 for r in rows.values())
    report = write_report(result, tmp_path, "dlhpc bench scale --model mlp")
    text = report.read_text()
    assert "| strong | 2 × 1 |" in text and "| weak | 2 × 1 | 128 |" in text
    two = rows[("strong", 2, 1)]  # paired with the 1 × 1 run of its own pass
    base = rows[("strong", 1, 1)]["samples_per_second"]
    assert two["ratios"] == [pytest.approx(two["samples_per_second"] / base)]
    assert two["gradient_exchange"] in ("shared memory", "gloo")
    assert rows[("strong", 1, 1)]["gradient_exchange"] is None
    assert rows[("strong", 1, 1)]["waiting_share"] is None
    table = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
             if line.startswith("| ")]  # fmt: skip
    column = table[0].index("waiting / exchange")
    assert next(r for r in table if r[:2] == ["strong", "1 × 1"])[column] == "—"
    if two["gradient_exchange"] == "shared memory":
        assert 0 < two["waiting_share"] < 1 and 0 < two["exchange_share"] < 1
        assert f"| {two['waiting_share']:.1%} / {two['exchange_share']:.1%} |" in text
    assert report.with_suffix(".png").is_file()
