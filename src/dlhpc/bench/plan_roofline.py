"""The roofline model of ``dlhpc plan``: a training step's time on N data-parallel devices.

    step(N) = max(F·b ÷ (peak·e), bytes(b) ÷ (bandwidth·e), ops × op_overhead) + allreduce(N)
    allreduce(N) = 2(N−1)/N × G ÷ network + 2(N−1) × buckets × latency,   b = ⌈B ÷ N⌉

F: counted FLOPs per sample; B: the global batch (``dlhpc train --batch-size``, split among the
ranks); G: gradient bytes; e: the efficiency (this machine's roofline bound ÷ its measured step
time). Every number out of here is an estimate.

    p = Projector(needs, calibration, device, efficiency=0.3, epochs=15)
    p.finish_seconds(nodes=4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dlhpc.bench.plan_catalog import Assumptions, Device
from dlhpc.bench.plan_measure import Calibration, Needs

DDP_BUCKET_BYTES = 25 * 2**20  # DistributedDataParallel's default bucket_cap_mb=25


@dataclass(frozen=True)
class Step:
    """One estimated training step on ``nodes`` ranks of one device type (seconds)."""

    nodes: int
    batch: int  # per rank: the largest part of the global batch
    compute: float
    memory: float
    overhead: float  # dispatched ops × per-op overhead: the floor of a tiny step
    allreduce: float

    @property
    def roof(self) -> float:
        return max(self.compute, self.memory, self.overhead)

    @property
    def seconds(self) -> float:
        return self.roof + self.allreduce  # DDP overlaps them in part: this is conservative

    @property
    def bound(self) -> str:
        terms = {"compute": self.compute, "memory": self.memory, "overhead": self.overhead,
                 "network": self.allreduce}  # fmt: skip
        return max(terms, key=lambda k: terms[k])


def ring_allreduce_seconds(nbytes: float, nodes: int, bandwidth: float, latency: float) -> float:
    """A ring all-reduce of ``nbytes`` over ``nodes``: each sends 2(N−1)/N of the data, in
    2(N−1) messages per DDP bucket, each paying ``latency``."""
    if nodes <= 1:
        return 0.0
    buckets = max(1, math.ceil(nbytes / DDP_BUCKET_BYTES))
    return 2 * (nodes - 1) / nodes * nbytes / bandwidth + 2 * (nodes - 1) * buckets * latency


def estimate_step(needs: Needs, dev: Device, efficiency: float, nodes: int) -> Step:
    b = math.ceil(needs.batch_size / nodes)
    allreduce = 0.0
    if nodes > 1:
        if dev.network_bandwidth is None:
            raise ValueError(f"{dev.name} has no network figure: one node only")
        allreduce = ring_allreduce_seconds(
            needs.allreduce_bytes, nodes, dev.network_bandwidth, dev.network_latency
        )
    return Step(
        nodes=nodes, batch=b,
        compute=needs.flops_per_sample * b / (dev.fp32_flops * efficiency),
        memory=needs.bytes_per_step(b) / (dev.memory_bandwidth * efficiency),
        overhead=needs.ops_per_step * dev.op_overhead, allreduce=allreduce,
    )  # fmt: skip


def roofline_efficiency(needs: Needs, cal: Calibration) -> float:
    """This machine's roofline bound ÷ its measured step time (= MFU when compute-bound)."""
    here = this_machine(cal)
    bound = estimate_step(needs, here, 1.0, 1).roof
    return bound / (needs.batch_size / cal.samples_per_second)


def this_machine(cal: Calibration) -> Device:
    return Device(
        name=f"this machine: {cal.device}", kind="gpu" if cal.device_type == "cuda" else "cpu",
        fp32_flops=cal.peak_flops, memory_bytes=cal.memory_bytes,
        memory_bandwidth=cal.memory_bandwidth, measured=True,
        sources={
            "fp32_tflops": f"measured: fp32 GEMM peak, {cal.threads} thread(s)",
            "memory_bandwidth_gb_s": "measured: copy of a 128 MiB buffer (read + write)",
            "memory_gb": "this machine's total memory",
        },
    )  # fmt: skip


@dataclass(frozen=True)
class Projector:
    """Time to finish on ``nodes`` devices of one kind, evaluation included."""

    needs: Needs
    cal: Calibration
    dev: Device
    efficiency: float
    epochs: int

    def max_nodes(self, assumptions: Assumptions) -> int:
        if self.dev.network_bandwidth is None:
            return 1
        return max(1, min(assumptions.max_nodes, self.needs.batch_size))

    def eval_seconds(self, nodes: int) -> float:
        """This machine's measured evaluation pass, scaled like a training step, split N ways."""
        here = self.needs.batch_size / self.cal.samples_per_second
        one = estimate_step(self.needs, self.dev, self.efficiency, 1).roof
        return self.cal.eval_seconds * one / here / nodes

    def epoch_seconds(self, nodes: int) -> float:
        step = estimate_step(self.needs, self.dev, self.efficiency, nodes)
        steps = self.needs.train_samples / self.needs.batch_size
        return steps * step.seconds + self.eval_seconds(nodes)

    def finish_seconds(self, nodes: int) -> float:
        return self.epochs * self.epoch_seconds(nodes)

    def fits(self, nodes: int) -> bool:
        b = math.ceil(self.needs.batch_size / nodes)
        return self.needs.memory_bytes(b) <= self.dev.memory_bytes


@dataclass(frozen=True)
class Reach:
    """Nodes for a target time: the fewest that make it (or None), the fastest, and why."""

    nodes: int | None
    fastest_nodes: int
    fastest_seconds: float
    reason: str


def nodes_needed(p: Projector, target_seconds: float, assumptions: Assumptions) -> Reach:
    """The fewest nodes that finish within ``target_seconds`` (1 … the catalog's max_nodes,
    at most one rank per sample of the global batch), or None and why not."""
    limit = p.max_nodes(assumptions)
    found: int | None = None
    best, best_s = 0, math.inf
    for n in range(1, limit + 1):
        if not p.fits(n):
            continue
        t = p.finish_seconds(n)
        if t <= target_seconds and found is None:
            found = n
        if t < best_s:
            best, best_s = n, t
    if best == 0:
        need = p.needs.memory_bytes(math.ceil(p.needs.batch_size / limit))
        why = (f"not reachable: needs {need / 1e9:.3g} GB per rank, the device has "
               f"{p.dev.memory_bytes / 1e9:.3g} GB")  # fmt: skip
        return Reach(None, 1, p.finish_seconds(1), why)
    if found is not None:
        why = f"{found} node(s) finish in {hours(p.finish_seconds(found))} (estimate)"
        return Reach(found, best, best_s, why)
    return Reach(None, best, best_s, f"not reachable: {_why_not(p, best, limit)}")


def _why_not(p: Projector, best: int, limit: int) -> str:
    step = estimate_step(p.needs, p.dev, p.efficiency, best)
    head = f"the fastest is {hours(p.finish_seconds(best))} with {best} node(s)"
    if p.dev.network_bandwidth is None:
        return f"{head}; no network figure, so a single node"
    if best < limit and step.overhead >= max(step.compute, step.memory):
        return (f"{head}: the per-op floor ({p.needs.ops_per_step} ops × "
                f"{p.dev.op_overhead * 1e6:.3g} µs = {ms(step.overhead)} per step) does not "
                "shrink with more nodes while the all-reduce grows")  # fmt: skip
    if best < limit:
        return (f"{head}: beyond that the all-reduce ({ms(step.allreduce)} per step there) "
                "grows faster than the compute shrinks")  # fmt: skip
    if limit == p.needs.batch_size:
        return f"{head}: the global batch {p.needs.batch_size} allows at most that many ranks"
    return f"{head}, the search limit (max_nodes in the catalog's [assumptions])"


def hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def scaling_nodes(limit: int) -> list[int]:
    out = [1]
    while out[-1] * 2 <= limit:
        out.append(out[-1] * 2)
    return out if out[-1] == limit else [*out, limit]


def project_device(
    p: Projector, assumptions: Assumptions, target_seconds: float | None
) -> dict[str, Any]:
    """One device's projection: a step at 1 node, scaling over nodes, nodes for the target."""
    one = estimate_step(p.needs, p.dev, p.efficiency, 1)
    finish = p.finish_seconds(1)
    row: dict[str, Any] = {
        "device": p.dev.name, "kind": p.dev.kind, "measured": p.dev.measured, "estimate": True,
        "peak_flops": p.dev.fp32_flops, "bf16_peak_flops": p.dev.bf16_flops,
        "memory_bandwidth": p.dev.memory_bandwidth, "memory_bytes": p.dev.memory_bytes,
        "network_bandwidth": p.dev.network_bandwidth, "efficiency": p.efficiency,
        "step": _step_dict(one), "samples_per_second": p.needs.batch_size / one.seconds,
        "epoch_seconds": p.epoch_seconds(1), "finish_seconds": finish, "fits": p.fits(1),
        "memory_needed_bytes": p.needs.memory_bytes(p.needs.batch_size),
        "scaling": [_scaling_row(p, n) for n in scaling_nodes(p.max_nodes(assumptions))],
        "sources": p.dev.sources,
    }  # fmt: skip
    reach = nodes_needed(p, target_seconds if target_seconds is not None else 0.0, assumptions)
    n = reach.nodes or 1
    price = p.dev.price_per_hour
    row.update(
        nodes_needed=reach.nodes if target_seconds is not None else None,
        nodes_needed_reason=reach.reason if target_seconds is not None else None,
        plan_nodes=n, plan_finish_seconds=p.finish_seconds(n),
        fastest={"nodes": reach.fastest_nodes, "finish_seconds": reach.fastest_seconds},
        currency=p.dev.currency or None,
        cost=None if price is None else price * n * p.finish_seconds(n) / 3600,
    )  # fmt: skip
    return row


def _step_dict(s: Step) -> dict[str, Any]:
    return {"nodes": s.nodes, "per_rank_batch": s.batch, "compute_s": s.compute,
            "memory_s": s.memory, "overhead_s": s.overhead, "allreduce_s": s.allreduce,
            "seconds": s.seconds, "bound": s.bound}  # fmt: skip


def _scaling_row(p: Projector, n: int) -> dict[str, Any]:
    s = estimate_step(p.needs, p.dev, p.efficiency, n)
    base = p.finish_seconds(1)
    return {**_step_dict(s), "finish_seconds": p.finish_seconds(n), "fits": p.fits(n),
            "speedup": base / p.finish_seconds(n)}  # fmt: skip
