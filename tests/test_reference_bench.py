"""dlhpc.bench.reference_mlp: the benchmark runs, compares like with like, and writes its report."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlhpc.bench.reference_mlp import bench_mlp_step, main, render_report


def test_bench_mlp_step_times_twins_from_equal_weights() -> None:
    out = bench_mlp_step(
        batch_size=16, hidden=(8,), in_features=12, classes=3, threads=1, repeats=3
    )
    # equal weights and data: the first losses agree to float32 rounding
    assert out["first_step_loss"]["numpy"] == pytest.approx(
        out["first_step_loss"]["torch"], rel=1e-5
    )
    assert out["config"]["sizes"] == [12, 8, 3]
    assert out["threads_used"]["torch"] == 1
    assert out["numpy_ms"] > 0 and out["torch_ms"] > 0
    assert out["torch_over_numpy_time"] == pytest.approx(out["torch_ms"] / out["numpy_ms"])
    assert out["numpy_samples_per_s"] == pytest.approx(16e3 / out["numpy_ms"])
    report = render_report([out], "test", (0.0, 0.0))
    for heading in ("## Hardware", "## Versions", "## Config", "## Method", "## Results"):
        assert heading in report
    assert "| NumPy reference |" in report and "| PyTorch `models.mlp.MLP` |" in report


def test_main_writes_the_dated_report(tmp_path: Path) -> None:
    path = main(["--out", str(tmp_path), "--threads", "1", "--repeats", "2", "--batch-size", "8"])
    assert path.parent == tmp_path and path.name.startswith("reference_mlp_cpu_")
    assert path.suffix == ".md" and "## Results" in path.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    first = path.read_text(encoding="utf-8")
    again = main(["--out", str(tmp_path), "--threads", "1", "--repeats", "2", "--batch-size", "8"])
    assert again.name == path.name.replace(".md", "-2.md")  # the same day's first record stays
    assert path.read_text(encoding="utf-8") == first
