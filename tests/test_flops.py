"""FLOP counting and the measured peak behind summary.json's mfu."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from dlhpc.cli import main
from dlhpc.data.batches import ImageBatches
from dlhpc.engine import flops
from dlhpc.engine.flops import count_train_flops, measure_peak
from dlhpc.models import ImageInput, ModelConfig, ModelSpec, build_model


def test_cnn_training_flops_match_the_hand_count() -> None:
    model = build_model(ModelSpec(ModelConfig("cnn"), ImageInput(1, 28, 28, (0.5,), (0.25,)),
                                  tuple("0123456789")))  # fmt: skip
    macs = {"conv1": 26 * 26 * 32 * 9, "conv2": 11 * 11 * 64 * 32 * 9,
            "conv3": 3 * 3 * 64 * 64 * 9, "fc1": 576 * 64, "fc2": 64 * 10}  # fmt: skip
    forward = 2 * sum(macs.values())
    # backward: weight gradients for every layer, input gradients for all but the first
    backward = forward + (forward - 2 * macs["conv1"])
    data = ImageBatches(
        torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.int64)
    )
    before = [p.detach().clone() for p in model.parameters()]
    assert count_train_flops(model, data, 8) == forward + backward == 16_376_064
    assert all(p.grad is None for p in model.parameters())  # left as it was
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("name", ["bag", "lstm", "transformer"])
def test_the_count_is_flop_counter_modes(name: str) -> None:
    # count_train_flops enters PyTorch's FlopCounterMode without its torch._dynamo import: the
    # same formulas must give the same total as the stock context manager.
    from torch.utils.flop_counter import FlopCounterMode

    from dlhpc.data.batches import gather_ragged
    from dlhpc.models import TextInput

    torch.manual_seed(0)
    model = build_model(ModelSpec(ModelConfig(name, embed_dim=16, units=16, bigrams=31),
                                  TextInput(vocab_size=60), ("a", "b", "c")))  # fmt: skip
    lengths = torch.randint(1, 12, (8,))
    corpus_offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    corpus_ids = torch.randint(2, 60, (int(corpus_offsets[-1]),))
    y = torch.randint(0, 3, (8,))

    class Texts:
        index_device = torch.device("cpu")

        def __len__(self) -> int:
            return 8

        def inputs(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return gather_ragged(corpus_ids, corpus_offsets, idx)

        def labels(self, idx: torch.Tensor) -> torch.Tensor:
            return y[idx]

    data = Texts()
    with FlopCounterMode(display=False) as stock:
        loss = torch.nn.functional.cross_entropy(model(*data.inputs(torch.arange(8))),
                                                 data.labels(torch.arange(8)))  # fmt: skip
        loss.backward()  # type: ignore[no-untyped-call]
    model.zero_grad(set_to_none=True)
    assert stock.get_total_flops() > 0
    assert count_train_flops(model, data, 8) == stock.get_total_flops() / 8


def test_peak_is_a_positive_rate() -> None:
    assert measure_peak(torch.device("cpu"), seconds=0.05) > 1e8  # any CPU does > 0.1 GFLOP/s


def test_bench_peak_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "peak", "--seconds", "0.05", "--json", "--quiet"]) == 0
    r = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert r["float32_gflops"] > 0.1 and r["threads"] >= 1


def test_summary_reports_flops_and_mfu(trained_run) -> None:  # type: ignore[no-untyped-def]
    s = json.loads((trained_run / "summary.json").read_text())
    assert s["flops_per_sample"] > 0 and 0 < s["mfu"] < 1
    assert s["achieved_flops"] == pytest.approx(
        s["flops_per_sample"] * s["samples_per_second"], rel=1e-3
    )


def test_a_measured_peak_is_reused_by_later_runs_until_it_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLHPC_CACHE", str(tmp_path / "cache"))
    calls: list[torch.dtype] = []

    def fake_measure(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
        calls.append(dtype)
        return 1e9 * len(calls)

    monkeypatch.setattr(flops, "measure_peak", fake_measure)
    cpu = torch.device("cpu")
    monkeypatch.setattr(flops, "_MEASURED", {})
    first = flops.measured_peak(cpu)
    assert first["flops"] == 1e9 and calls == [torch.float32]
    monkeypatch.setattr(flops, "_MEASURED", {})  # a later process: the file answers
    assert flops.measured_peak(cpu)["flops"] == 1e9 and len(calls) == 1
    assert flops.measured_peak(cpu, torch.bfloat16)["flops"] == 2e9  # another key: measured
    cached = json.loads(flops.peak_cache_file().read_text())
    assert len(cached) == 2
    monkeypatch.setattr(flops, "_MEASURED", {})
    later = time.time() + flops.PEAK_TTL_S + 1
    monkeypatch.setattr(flops.time, "time", lambda: later)
    assert flops.measured_peak(cpu)["flops"] == 3e9  # stale: measured again, others dropped
    assert len(json.loads(flops.peak_cache_file().read_text())) == 1
    flops.peak_cache_file().write_text("{not json")
    monkeypatch.setattr(flops, "_MEASURED", {})
    assert flops.measured_peak(cpu)["flops"] == 4e9  # a broken cache is measured over
