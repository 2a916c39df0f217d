"""``dlhpc plan``: what a model and data set need, and how long they would take where.

    dlhpc plan cnn --data digits --epochs 15 --target-hours 0.01 --json

    from dlhpc.bench.plan import run_plan
    plan = run_plan(DataConfig("digits"), ModelConfig("cnn"), epochs=15)

The needs are measured by running the model (FLOPs, bytes, ops); throughput by a short timed
calibration on this machine. Every other device is an estimate from a roofline model scaled by
the efficiency measured here, with data-parallel scaling over a ring all-reduce::

    step(N) = max(F·b ÷ (peak·e), bytes(b) ÷ (bandwidth·e), ops × op_overhead) + allreduce(N)
    allreduce(N) = 2(N−1)/N × G ÷ network + 2(N−1) × buckets × latency,   b = ⌈B ÷ N⌉

with F the counted FLOPs per sample, B the global batch, G the gradient bytes and ``e`` this
machine's roofline efficiency (its bound ÷ its measured step time).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch

from dlhpc.bench.plan_catalog import Catalog, load_catalog
from dlhpc.bench.plan_measure import Calibration, Needs, calibrate, measure_needs
from dlhpc.bench.plan_roofline import (
    Projector,
    hours,
    ms,
    project_device,
    roofline_efficiency,
    this_machine,
)
from dlhpc.data import DataConfig
from dlhpc.engine.config import OptimConfig
from dlhpc.engine.datasets import prepare_data
from dlhpc.engine.env import ClusterEnv, resolve_device, resolve_threads
from dlhpc.errors import ConfigError
from dlhpc.models import ModelConfig


def run_plan(
    data_cfg: DataConfig, model_cfg: ModelConfig, epochs: int = 15, batch_size: int = 128,
    target_hours: float | None = None, catalog: Catalog | None = None, steps: int = 30,
    optim_cfg: OptimConfig | None = None, seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Measure the model on this machine, then project it onto every catalog device."""
    if epochs < 1 or batch_size < 1 or steps < 1:
        raise ConfigError("--epochs, --batch-size and --steps must be at least 1")
    if target_hours is not None and not target_hours > 0:
        raise ConfigError(f"--target-hours must be positive, got {target_hours}")
    catalog = catalog or load_catalog()
    optim_cfg = optim_cfg or OptimConfig()
    torch.set_num_threads(resolve_threads(ClusterEnv(), None))
    device = resolve_device("auto", ClusterEnv())
    data = prepare_data(data_cfg, model_cfg, device, seed)
    if say:
        say(f"measuring {model_cfg.name} on {data_cfg.source}: one counted step, "
            f"{steps} timed steps on {device.type}…")  # fmt: skip
    needs = measure_needs(data, model_cfg, optim_cfg, batch_size, device, seed)
    cal = calibrate(data, model_cfg, optim_cfg, needs.batch_size, device, seed, steps)
    return assemble(needs, cal, catalog, epochs, target_hours, data_cfg.source)


def assemble(
    needs: Needs, cal: Calibration, catalog: Catalog, epochs: int, target_hours: float | None,
    source: str,
) -> dict[str, Any]:  # fmt: skip
    """The plan as one JSON-able dict: needs, calibration, projections, recommendation."""
    a = catalog.assumptions
    measured = roofline_efficiency(needs, cal)
    applied = min(max(measured, a.efficiency_min), a.efficiency_max)
    target_s = None if target_hours is None else target_hours * 3600
    here = Projector(needs, cal, this_machine(cal), measured, epochs)  # reproduces the measure
    projectors = [here, *(Projector(needs, cal, d, applied, epochs) for d in catalog.devices)]
    projections = [project_device(p, a, target_s) for p in projectors]
    b = needs.batch_size
    return {
        "model": needs.model, "data": source, "epochs": epochs, "batch_size": b,
        "target_hours": target_hours, "params": needs.params,
        "trainable_params": needs.trainable_params, "train_samples": needs.train_samples,
        "eval_samples": needs.eval_samples, "steps_per_epoch": math.ceil(needs.train_samples / b),
        "flops_per_sample": needs.flops_per_sample,
        "flops_per_epoch": needs.flops_per_sample * needs.train_samples,
        "flops_total": needs.flops_per_sample * needs.train_samples * epochs,
        "memory": {
            "weights_bytes": needs.weight_bytes, "gradients_bytes": needs.gradient_bytes,
            "optimizer_state_bytes": needs.optimizer_bytes,
            "activations_bytes": needs.activation_bytes, "total_bytes": needs.memory_bytes(b),
            "batch_size": b,
        },
        "bytes_per_step": needs.bytes_per_step(b),
        "allreduce_bytes_per_step": needs.allreduce_bytes, "ops_per_step": needs.ops_per_step,
        "calibration": _calibration_dict(needs, cal),
        "efficiency": {"measured": measured, "applied": applied,
                       "clamped": applied != measured},
        "projections": projections,
        "recommendation": recommend(projections, target_s),
        "assumptions": assumptions(needs, cal, catalog, measured, applied),
        "catalog": str(catalog.path),
    }  # fmt: skip


def _calibration_dict(needs: Needs, cal: Calibration) -> dict[str, Any]:
    sps = cal.samples_per_second
    try:
        load = os.getloadavg()[0]  # a shared machine: how busy it was
    except OSError:
        load = None
    return {
        "device": cal.device, "device_type": cal.device_type, "threads": cal.threads,
        "warmup_steps": cal.warmup_steps, "steps": cal.steps, "samples": cal.samples,
        "seconds": cal.seconds, "samples_per_second": sps,
        "mean_samples_per_second": cal.samples / cal.seconds,
        "chunk_samples_per_second": list(cal.chunk_rates), "spread": cal.spread,
        "step_seconds": needs.batch_size / sps, "eval_seconds": cal.eval_seconds,
        "peak_flops": cal.peak_flops, "memory_bandwidth": cal.memory_bandwidth,
        "memory_bytes": cal.memory_bytes,
        "mfu": needs.flops_per_sample * sps / cal.peak_flops if cal.peak_flops else None,
        "load_average": load,
    }  # fmt: skip


NEAR = 1.1  # projections within 10% of each other are equal within this model's error
NOISY = 0.5  # calibration chunks further apart than this (÷ median): say the machine was busy


def _least_hardware(
    cands: list[dict[str, Any]], key: Callable[[dict[str, Any]], float]
) -> tuple[dict[str, Any], str]:
    """The best by ``key``; among those within NEAR of it, the one with the lowest peak."""
    best = min(key(p) for p in cands)
    near = [p for p in cands if key(p) <= best * NEAR]
    pick = min(near, key=lambda p: p["peak_flops"])
    tie = (f"; {len(near)} devices are within {NEAR - 1:.0%} of each other: the one with the "
           "lowest peak" if len(near) > 1 else "")  # fmt: skip
    return pick, tie


def _pick(projections: list[dict[str, Any]], target_s: float | None) -> tuple[dict[str, Any], str]:
    here = projections[0]
    if target_s is None:
        fits = [p for p in projections if p["fits"]] or [here]
        pick, tie = _least_hardware(fits, lambda p: p["finish_seconds"])
        return pick, "the fastest single node (no --target-hours given)" + tie
    target = hours(target_s)
    ok = [p for p in projections if p["nodes_needed"] is not None]
    priced = [p for p in ok if p["cost"] is not None]
    if here in ok:
        return here, "this machine meets the target: nothing to book"
    if priced:
        return min(priced, key=lambda p: p["cost"]), f"the cheapest that meets the {target} target"
    if ok:
        fewest = min(p["nodes_needed"] for p in ok)
        cands = [p for p in ok if p["nodes_needed"] == fewest]
        pick, tie = _least_hardware(cands, lambda p: p["plan_finish_seconds"])
        return pick, f"meets the {target} target with the fewest nodes (no prices)" + tie
    pick, tie = _least_hardware(projections, lambda p: p["fastest"]["finish_seconds"])
    return pick, f"no device reaches the {target} target; this one comes closest" + tie


def recommend(projections: list[dict[str, Any]], target_s: float | None) -> dict[str, Any]:
    """The device to book and why: this machine if it meets the target (nothing to book); else
    the cheapest that does where the catalog has prices, else the fewest nodes; without a
    target the fastest. Near-ties go to the device with the lowest peak."""
    pick, why = _pick(projections, target_s)
    nodes, finish = pick["plan_nodes"], pick["plan_finish_seconds"]
    if target_s is not None and pick["nodes_needed"] is None:
        nodes, finish = pick["fastest"]["nodes"], pick["fastest"]["finish_seconds"]
    reasons = [why, *_step_reasons(pick, projections[0])]
    return {"device": pick["device"], "nodes": nodes, "finish_seconds": finish,
            "estimate": True, "reasons": reasons}  # fmt: skip


def _step_reasons(pick: dict[str, Any], here: dict[str, Any]) -> list[str]:
    s = pick["step"]
    out = [f"{s['bound']}-bound: {ms(s['seconds'])} per step (compute {ms(s['compute_s'])}, "
           f"memory {ms(s['memory_s'])}, per-op floor {ms(s['overhead_s'])})"]  # fmt: skip
    if pick is not here:
        mine, theirs = here["finish_seconds"], pick["finish_seconds"]
        out.append(f"{mine / theirs:.3g}× faster than this machine on one node "
                   f"({hours(theirs)} vs {hours(mine)})")  # fmt: skip
    if s["bound"] == "overhead":
        out.append("the model is too small to keep this device busy: per-op overhead sets the "
                   "step time; a larger batch would raise throughput at little cost")  # fmt: skip
    two = next((r for r in pick["scaling"] if r["nodes"] == 2), None)
    if two is not None:
        out.append(f"2 nodes: {two['speedup']:.2f}× (all-reduce {ms(two['allreduce_s'])} per "
                   f"step, {two['bound']}-bound)")  # fmt: skip
    return out


def assumptions(
    needs: Needs, cal: Calibration, catalog: Catalog, measured: float, applied: float
) -> list[str]:
    a = catalog.assumptions
    clamp = (f"; clamped from {measured:.3g} to [{a.efficiency_min:g}, {a.efficiency_max:g}]"
             if applied != measured else "")  # fmt: skip
    priced = any(d.price_per_hour is not None for d in catalog.devices)
    noisy = (
        [f"the calibration's chunks differed by {cal.spread:.0%}: this machine was busy while "
         "measured; every projection scales with it (rerun, or raise --steps)"]
        if cal.spread > NOISY else []
    )  # fmt: skip
    return [
        *noisy,
        "every projection is an estimate from a roofline model, not a measurement: "
        "step = max(FLOPs ÷ (peak × e), bytes ÷ (bandwidth × e), ops × per-op overhead) "
        "+ all-reduce",
        f"e = {applied:.3g} for catalog devices: this machine's roofline bound ÷ its measured "
        f"step time ({measured:.3g}; MFU {needs.flops_per_sample * cal.samples_per_second / cal.peak_flops:.3g})"  # noqa: E501
        f"{clamp}",
        "fp32 training (what dlhpc train runs): fp32 peaks; bf16 peaks are listed for reference",
        "bytes per step: weights ×4, gradients ×2, optimizer state ×2, saved activations ×4 "
        "(their gradients included), input ×1 — caches ignored",
        f"per-op floor: {needs.ops_per_step} ops per step (profiled) × each device's "
        "op_overhead_us: small models are launch-bound on GPUs",
        f"data parallel with the global batch {needs.batch_size} split among N ranks (as dlhpc "
        "train --batch-size); one node = one device with its own network link; ring all-reduce "
        f"of {needs.allreduce_bytes:,} gradient bytes per step, not overlapped with backward",
        "each epoch adds an evaluation pass: this machine's measured one, scaled by the ratio of "
        "step times and split among the ranks; start-up, data loading and checkpoints not counted",
        "memory per rank: weights + gradients + optimizer state + activations; framework "
        "workspaces and contexts not counted",
        f"catalog: {catalog.path}; [assumptions] {a.source}",
        "costs from the catalog's price_per_hour"
        if priced
        else "no costs: the catalog has no prices (add price_per_hour to a device)",
    ]
