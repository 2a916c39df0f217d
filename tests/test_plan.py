"""``dlhpc plan``: counted needs, the catalog, the roofline, nodes for a target, the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from dlhpc.bench.plan import assemble
from dlhpc.bench.plan_catalog import Assumptions, Catalog, Device, load_catalog, shipped_catalog
from dlhpc.bench.plan_measure import Calibration, Needs, measure_needs
from dlhpc.bench.plan_render import render_plan
from dlhpc.bench.plan_roofline import (
    Projector,
    estimate_step,
    nodes_needed,
    ring_allreduce_seconds,
)
from dlhpc.cli import main
from dlhpc.data.batches import ImageBatches
from dlhpc.engine.config import OptimConfig
from dlhpc.engine.datasets import Prepared
from dlhpc.engine.flops import count_train_flops
from dlhpc.models import ImageInput, ModelConfig, ModelSpec, build_model

CNN_PARAMS = 93_322


def tiny_images(n: int = 16) -> Prepared:
    """28×28 grey images, 10 classes: the tutorial CNN's input, no data set to load."""
    spec = ModelSpec(ModelConfig("cnn"), ImageInput(1, 28, 28, (0.5,), (0.25,)),
                     tuple("0123456789"))  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 10
    return Prepared(spec, ImageBatches(x, y), {"test": ImageBatches(x[:4], y[:4])}, None, None)


def make_needs(**kw: object) -> Needs:
    base = dict(model="m", params=1000, trainable_params=1000, batch_size=128,
                train_samples=12_800, eval_samples=1000, flops_per_sample=1e9,
                weight_bytes=4000, gradient_bytes=4000, optimizer_bytes=8000,
                activation_bytes=128_000, input_bytes=128 * 784, ops_per_step=50)  # fmt: skip
    base.update(kw)
    return Needs(**base)  # type: ignore[arg-type]


def make_cal(**kw: object) -> Calibration:
    base = dict(device="test cpu", device_type="cpu", threads=2, warmup_steps=1, steps=5,
                samples=640, seconds=1.0, chunk_rates=(600.0, 640.0, 700.0), eval_seconds=0.1,
                peak_flops=1e12, memory_bandwidth=1e10, memory_bytes=8e9)  # fmt: skip
    base.update(kw)
    return Calibration(**base)  # type: ignore[arg-type]


def make_device(**kw: object) -> Device:
    base = dict(name="dev", kind="gpu", fp32_flops=1e13, memory_bytes=1e10,
                memory_bandwidth=1e12, network_bandwidth=1e10, network_latency=0.0)  # fmt: skip
    base.update(kw)
    return Device(**base)  # type: ignore[arg-type]


# --- needs, measured by running the model -------------------------------------------------


def test_needs_of_the_tutorial_cnn_are_exact() -> None:
    data = tiny_images(16)
    needs = measure_needs(data, ModelConfig("cnn"), OptimConfig(), 8, torch.device("cpu"), 0)
    assert needs.params == needs.trainable_params == CNN_PARAMS
    assert needs.weight_bytes == needs.gradient_bytes == 4 * CNN_PARAMS == 373_288
    assert needs.allreduce_bytes == 373_288
    # Adam: exp_avg and exp_avg_sq like each weight, plus one float32 step count per tensor
    assert needs.optimizer_bytes == 2 * 373_288 + 4 * 10
    assert needs.input_bytes == 8 * 28 * 28  # uint8 pixels
    assert needs.ops_per_step > 10


def test_plan_flops_are_count_train_flops() -> None:
    data = tiny_images(16)
    needs = measure_needs(data, ModelConfig("cnn"), OptimConfig(), 8, torch.device("cpu"), 0)
    torch.manual_seed(0)
    model = build_model(data.spec)
    assert needs.flops_per_sample == count_train_flops(model, data.train, 8) == 16_376_064


# What autograd keeps per sample for backward, 28×28 input (float32 unless said):
CNN_SAVED_PER_SAMPLE = sum((
    784 * 4,  # conv1's input (the normalised image)
    32 * 26 * 26 * 4,  # ReLU 1's output (also max-pool 1's input: one storage)
    32 * 13 * 13 * 8,  # max-pool 1's indices, int64
    32 * 13 * 13 * 4,  # conv2's input
    64 * 11 * 11 * 4,  # ReLU 2's output
    64 * 5 * 5 * 8,  # max-pool 2's indices
    64 * 5 * 5 * 4,  # conv3's input
    64 * 3 * 3 * 4,  # ReLU 3's output (flattened: fc1's input)
    64 * 4,  # ReLU 4's output (fc2's input)
    10 * 4,  # log-softmax's output
    8,  # the label, int64
))  # fmt: skip


def test_activations_are_what_backward_keeps_and_sgd_keeps_no_state() -> None:
    data, cpu = tiny_images(16), torch.device("cpu")
    sgd = OptimConfig(optimizer="sgd", momentum=0.0)
    for batch in (4, 8):
        needs = measure_needs(data, ModelConfig("cnn"), sgd, batch, cpu, 0)
        assert needs.optimizer_bytes == 0
        # + 4: the loss's float32 total weight, once per batch
        assert (
            needs.activation_bytes
            == CNN_SAVED_PER_SAMPLE * batch + 4
            == needs.batch_size * 207_344 + 4
        )


# --- the roofline -------------------------------------------------------------------------


def test_roofline_picks_the_bound() -> None:
    needs = make_needs(flops_per_sample=1e9, activation_bytes=128, input_bytes=128)
    compute = estimate_step(needs, make_device(fp32_flops=1e12, memory_bandwidth=1e12), 0.5, 1)
    assert compute.bound == "compute"
    assert compute.compute == pytest.approx(1e9 * 128 / (1e12 * 0.5))
    needs = make_needs(flops_per_sample=1.0, activation_bytes=10**9)
    memory = estimate_step(needs, make_device(fp32_flops=1e15, memory_bandwidth=1e9), 0.5, 1)
    assert memory.bound == "memory"
    assert memory.memory == pytest.approx(needs.bytes_per_step(128) / (1e9 * 0.5))
    tiny = make_needs(flops_per_sample=1.0, activation_bytes=128, ops_per_step=100)
    floor = estimate_step(tiny, make_device(op_overhead=1e-5), 0.5, 1)
    assert floor.bound == "overhead" and floor.seconds == pytest.approx(1e-3)


def test_ring_allreduce_grows_with_nodes() -> None:
    g, bw, lat = 4e8, 1e10, 5e-6
    times = [ring_allreduce_seconds(g, n, bw, lat) for n in (1, 2, 4, 8, 64)]
    assert times[0] == 0.0
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[1] == pytest.approx(g / bw + 2 * 16 * lat)  # 400 MB = 16 DDP buckets
    assert ring_allreduce_seconds(g, 10**6, bw, 0.0) == pytest.approx(2 * g / bw, rel=1e-5)


def test_step_with_nodes_splits_the_batch_and_adds_the_allreduce() -> None:
    needs, dev = make_needs(), make_device()
    one, four = (estimate_step(needs, dev, 0.5, n) for n in (1, 4))
    assert four.batch == 32 and four.compute == pytest.approx(one.compute / 4)
    assert four.allreduce == pytest.approx(ring_allreduce_seconds(4000, 4, 1e10, 0.0))


# --- nodes for a target -------------------------------------------------------------------


def test_nodes_needed_reachable_and_not() -> None:
    p = Projector(make_needs(), make_cal(), make_device(), 0.5, epochs=10)
    a = Assumptions()
    assert nodes_needed(p, p.finish_seconds(1) * 1.01, a).nodes == 1
    reach = nodes_needed(p, p.finish_seconds(1) / 3, a)
    assert reach.nodes is not None and reach.nodes > 1
    assert p.finish_seconds(reach.nodes) <= p.finish_seconds(1) / 3
    assert p.finish_seconds(reach.nodes - 1) > p.finish_seconds(1) / 3
    never = nodes_needed(p, 1e-9, a)
    assert never.nodes is None and never.reason.startswith("not reachable")
    assert 1 <= never.fastest_nodes <= 128  # at most one rank per sample of the batch


def test_no_network_means_one_node_and_too_little_memory_means_none() -> None:
    single = Projector(make_needs(), make_cal(), make_device(network_bandwidth=None), 0.5, 1)
    reach = nodes_needed(single, single.finish_seconds(1) / 2, Assumptions())
    assert reach.nodes is None and "single node" in reach.reason
    small = Projector(make_needs(), make_cal(), make_device(memory_bytes=1000.0), 0.5, 1)
    reach = nodes_needed(small, 1e9, Assumptions())
    assert reach.nodes is None and "GB per rank" in reach.reason


def test_latency_bound_scaling_stops_short_of_the_batch() -> None:
    dev = make_device(network_latency=1e-3, op_overhead=1e-4)
    p = Projector(make_needs(ops_per_step=100), make_cal(), dev, 0.5, 1)
    reach = nodes_needed(p, 1e-9, Assumptions())
    assert reach.nodes is None and reach.fastest_nodes < 128 and "all-reduce" in reach.reason


# --- the whole plan from synthetic measurements -------------------------------------------


def plan_for(devices: tuple[Device, ...], target_hours: float | None = None) -> dict:  # type: ignore[type-arg]
    catalog = Catalog(Path("test.toml"), devices, Assumptions())
    return assemble(make_needs(), make_cal(), catalog, 10, target_hours, "synthetic")


def test_this_machine_reproduces_its_measurement_and_all_are_estimates() -> None:
    plan = plan_for((make_device(),))
    here = plan["projections"][0]
    assert here["measured"] and here["device"].startswith("this machine")
    assert here["samples_per_second"] == pytest.approx(plan["calibration"]["samples_per_second"])
    assert all(p["estimate"] for p in plan["projections"])
    assert plan["recommendation"]["estimate"] and plan["assumptions"]
    assert plan["flops_per_epoch"] == 1e9 * 12_800


def test_efficiency_is_clamped_for_catalog_devices() -> None:
    plan = plan_for((make_device(),))  # 1e9 FLOP × 640 samples/s ÷ 1e12: MFU 0.64 > 0.6
    assert plan["efficiency"]["measured"] == pytest.approx(0.64)
    assert plan["efficiency"]["applied"] == 0.6 and plan["efficiency"]["clamped"]
    assert plan["projections"][1]["efficiency"] == 0.6
    assert any("clamped" in a for a in plan["assumptions"])


def test_costs_only_where_the_catalog_has_a_price() -> None:
    plan = plan_for((make_device(name="free"), make_device(name="paid", price_per_hour=2.0)))
    free, paid = plan["projections"][1:]
    assert free["cost"] is None
    assert paid["cost"] == pytest.approx(2.0 * paid["finish_seconds"] / 3600)


def test_recommendation_meets_the_target() -> None:
    slow, fast = make_device(name="slow", fp32_flops=1e12), make_device(name="fast")
    plan = plan_for((slow, fast), target_hours=1e-6)
    assert plan["recommendation"]["reasons"][0].startswith("no device reaches")
    here_hours = plan["projections"][0]["finish_seconds"] / 3600
    plan = plan_for((slow, fast), target_hours=here_hours * 2)
    assert plan["recommendation"]["device"].startswith("this machine")
    plan = plan_for((slow, fast))
    assert plan["recommendation"]["device"] == "fast"


def test_render_prints_tables_and_assumptions() -> None:
    out = io.StringIO()
    render_plan(plan_for((make_device(name="[odd] name"),), 0.01), Console(file=out, width=200))
    text = out.getvalue()
    assert "[odd] name" in text and "Recommendation (estimate)" in text
    assert "Assumptions" in text


# --- the catalog --------------------------------------------------------------------------


def test_shipped_catalog_has_sources_and_no_prices() -> None:
    catalog = load_catalog()
    names = " ".join(d.name for d in catalog.devices)
    for want in ("T4", "L4", "A100", "H100", "H200", "EPYC 9654", "Xeon Platinum 8480+"):
        assert want in names
    for d in catalog.devices:
        assert d.price_per_hour is None
        assert {"fp32_tflops", "memory_gb", "memory_bandwidth_gb_s"} <= set(d.sources)
        assert d.fp32_flops > 1e12 and d.memory_bandwidth > 1e11
    assert shipped_catalog().is_file()


GOOD_DEVICE = """
[[device]]
name = "X"
kind = "gpu"
fp32_tflops = 10
memory_gb = 16
memory_bandwidth_gb_s = 300
[device.source]
fp32_tflops = "datasheet"
memory_gb = "datasheet"
memory_bandwidth_gb_s = "datasheet"
"""

BAD_CATALOGS = {
    "syntax": ("[[device]\nname = 'x'", "not valid TOML"),
    "unknown key": (GOOD_DEVICE.replace("kind =", "fp32_tflop = 3\nkind ="), "unknown key"),
    "no source": (GOOD_DEVICE.replace('memory_gb = "datasheet"\n', ""), "no source"),
    "negative": (GOOD_DEVICE.replace("memory_gb = 16", "memory_gb = -16"), "positive"),
    "kind": (GOOD_DEVICE.replace('"gpu"', '"tpu"'), "kind"),
    "top level": ("prices = 1\n" + GOOD_DEVICE, "unknown top-level"),
    "assumptions": ("[assumptions]\nefficiency_max = 2\n" + GOOD_DEVICE, "efficiency"),
    "empty": ("format = 1\n", "at least one"),
}


def test_a_good_catalog_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    priced = GOOD_DEVICE.replace("[device.source]", 'price_per_hour = 1.5\ncurrency = "EUR"\n'
                                 "[device.source]\nprice_per_hour = 'my contract'")  # fmt: skip
    path.write_text(priced)
    (dev,) = load_catalog(path).devices
    assert dev.fp32_flops == 1e13 and dev.memory_bytes == 16e9 and dev.network_bandwidth is None
    assert dev.price_per_hour == 1.5 and dev.currency == "EUR"


@pytest.mark.parametrize("case", sorted(BAD_CATALOGS))
def test_malformed_catalog_is_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, words = BAD_CATALOGS[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["plan", "cnn", "--data", "digits", "--catalog", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err and words in err, err


def test_missing_catalog_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", "cnn", "--data", "digits", "--catalog", str(tmp_path / "none.toml")]
    assert main(args) == 2
    assert "cannot read" in capsys.readouterr().err


# --- the command --------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_prints_a_json_plan(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "cnn", "--data", "digits", "--epochs", "2", "--batch-size", "32",
            "--steps", "3", "--target-hours", "0.001", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    plan = json.loads(out.strip().splitlines()[-1])
    for key in ("flops_per_sample", "flops_per_epoch", "params", "memory", "bytes_per_step",
                "allreduce_bytes_per_step", "calibration", "projections", "recommendation",
                "assumptions"):  # fmt: skip
        assert key in plan, key
    assert plan["params"] == CNN_PARAMS and plan["flops_per_sample"] == 16_376_064
    assert plan["memory"]["weights_bytes"] == 373_288
    assert plan["calibration"]["samples_per_second"] > 0 and 0 < plan["calibration"]["mfu"] < 1
    assert len(plan["projections"]) == 1 + len(load_catalog().devices)
    for p in plan["projections"]:
        assert p["estimate"] and p["cost"] is None and "nodes_needed" in p
    assert "Projections" in out and "Recommendation (estimate)" in out


def test_near_ties_go_to_the_smaller_device_and_prices_rank_by_cost() -> None:
    floor = {"op_overhead": 1e-3}  # 50 ops × 1 ms: both overhead-bound, equally fast
    big = make_device(name="big", fp32_flops=1e15, **floor)
    small = make_device(name="small", fp32_flops=1e14, **floor)
    plan = plan_for((big, small))
    assert plan["recommendation"]["device"] == "small"
    assert "lowest peak" in plan["recommendation"]["reasons"][0]
    cheap = make_device(name="cheap", fp32_flops=5e12, price_per_hour=1.0)
    dear = make_device(name="dear", price_per_hour=100.0)
    target = plan_for((cheap,))["projections"][1]["finish_seconds"] / 3600 * 1.01
    plan = plan_for((cheap, dear), target_hours=target)
    assert plan["recommendation"]["device"] == "cheap"
    assert plan["recommendation"]["reasons"][0].startswith("the cheapest")
