"""``dlhpc bench train``: the bookkeeping behind the side-by-side table."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest

from dlhpc.bench.train import run_once, runners, summarise, write_report


def run(times: list[float], accs: list[float], n: int = 100) -> dict[str, object]:
    epochs = [{"epoch": i + 1, "train_seconds": t, "test_accuracy": a}
              for i, (t, a) in enumerate(zip(times, accs, strict=True))]  # fmt: skip
    return {"epochs": epochs, "train_samples": n}


def test_time_to_target_and_throughput() -> None:
    row = summarise(
        [run([1, 2, 3], [0.9, 0.97, 0.98]), run([1.2, 2.4, 3.6], [0.9, 0.96, 0.975])], 0.97
    )
    assert row["time_to_target_s"] == pytest.approx((2 + 3.6) / 2)
    assert row["samples_per_second"] == pytest.approx((300 / 3 + 300 / 3.6) / 2)
    assert row["final_accuracy"] == pytest.approx(0.9775)
    never = summarise([run([1, 2], [0.5, 0.96])], 0.97)
    assert never["time_to_target_s"] is None  # not reached: no time is claimed


@pytest.mark.skipif(find_spec("tensorflow") is not None, reason="TensorFlow is installed here")
def test_a_missing_peer_is_reported_as_skipped(tmp_path: Path) -> None:
    keras = next(r for r in runners(None, 1) if r.name == "keras")
    result = run_once(keras, tmp_path / "x.npz", tmp_path)
    assert "TensorFlow not installed" in result["skipped"]
    rows = {"keras": summarise([result], 0.97)}
    report = {"data": "digits", "train_samples": 1, "test_samples": 1, "threads": 1,
              "repeats": 1, "target": 0.97, "peers_python": None, "rows": rows}  # fmt: skip
    text = write_report(report, tmp_path, "dlhpc bench train").read_text()
    assert "| keras | skipped: TensorFlow not installed" in text
