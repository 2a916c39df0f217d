"""The serving benchmark's report writer and its choice of measurements (no servers started)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dlhpc.bench.serve import best, ok_under_bound, write_report


def report(p99: float | None, rps: float, qps: float = 0.0, errors: int = 0) -> dict[str, Any]:
    return {"p50_ms": None if p99 is None else p99 / 2, "p99_ms": p99, "throughput_rps": rps,
            "target_qps": qps, "errors": {"503": errors} if errors else {}}  # fmt: skip


def test_best_prefers_no_errors_then_low_p99() -> None:
    a, b, c = report(10, 100, errors=2), report(30, 90), report(20, 80)
    assert best([a, b, c]) is c
    assert ok_under_bound(report(50, 1)) and not ok_under_bound(report(51, 1))
    assert not ok_under_bound(report(10, 1, errors=1)) and not ok_under_bound(report(None, 0))


def test_report_has_the_ratio_and_every_point(tmp_path: Path) -> None:
    def results(rps: float, p50: float) -> dict[str, Any]:
        sweep = [report(20, q * 0.9, q) for q in (50, 100)] + [report(400, rps, 200)]
        return {"sweep": sweep, "single_stream": report(2 * p50, 300), "offline": report(80, rps),
                "best_rps_p99_ok": 90.0 if rps > 100 else 45.0}  # fmt: skip

    section = {"run": "r", "results": {"batching": results(180, 1.5),
                                       "no batching": results(60, 1.0)}}  # fmt: skip
    args = argparse.Namespace(runs=["r"], duration=1.0, repeats=2, qps="50,100,200")
    path = write_report(tmp_path / "x.md", [section], args, (0.5, 0.7))
    text = path.read_text()
    assert "**2.00×**" in text and "**+0.50 ms**" in text
    assert "| 200 | 180 · 200.0 / 400.0 | 60 · 200.0 / 400.0 |" in text
    assert "## Method" in text and "Load average before / after: 0.50 / 0.70" in text
