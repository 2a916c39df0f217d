"""What one training step of a model needs, measured by running it, and a timed calibration.

    from dlhpc.bench.plan_measure import measure_needs, calibrate
    needs = measure_needs(prepared, model_cfg, optim_cfg, batch_size=128, device=cpu, seed=0)
    cal = calibrate(prepared, model_cfg, optim_cfg, 128, cpu, seed=0, steps=30)

``measure_needs`` counts FLOPs (``count_train_flops``), bytes of weights, gradients, optimizer
state (the real optimizer's state after one step) and activations (what autograd saves for
backward during one forward), and the ops one step dispatches (profiled). ``calibrate`` times
real training steps after a warm-up, in the training loop's order: forward, loss, backward, step.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlhpc.data import batch_slices
from dlhpc.engine.config import OptimConfig
from dlhpc.engine.datasets import Prepared
from dlhpc.engine.evaluate import evaluate
from dlhpc.engine.flops import count_train_flops, device_name, measured_peak
from dlhpc.engine.optim import build_optimizer
from dlhpc.models import ModelConfig, build_model, count_parameters

# Ops that only change a tensor's metadata, or read a CPU scalar: no device kernel.
NO_KERNEL_OPS = {
    "aten::detach", "aten::detach_", "aten::t", "aten::view", "aten::reshape", "aten::flatten",
    "aten::_reshape_alias", "aten::lift_fresh", "aten::alias", "aten::as_strided",
    "aten::expand", "aten::unsqueeze", "aten::squeeze", "aten::permute", "aten::transpose",
    "aten::select", "aten::slice", "aten::item", "aten::_local_scalar_dense", "aten::empty",
}  # fmt: skip
CHUNKS = 5  # the timed steps are timed in this many chunks; the median chunk is the figure


@dataclass(frozen=True)
class Needs:
    """Per rank, for one training step at ``batch_size`` samples (bytes unless named)."""

    model: str
    params: int
    trainable_params: int
    batch_size: int
    train_samples: int
    eval_samples: int
    flops_per_sample: float  # forward + backward, counted
    weight_bytes: int
    gradient_bytes: int
    optimizer_bytes: int  # sum of the optimizer's state tensors after one step
    activation_bytes: int  # saved for backward at batch_size (deduplicated storages)
    input_bytes: int  # one batch of model inputs
    ops_per_step: int  # dispatched ops with a kernel: forward, backward, multi-tensor step

    @property
    def allreduce_bytes(self) -> int:
        """Gradients a data-parallel step all-reduces: every trainable parameter's."""
        return self.gradient_bytes

    def memory_bytes(self, batch: int) -> float:
        """Weights + gradients + optimizer state + activations for ``batch`` samples."""
        per_sample = self.activation_bytes / self.batch_size
        return self.weight_bytes + self.gradient_bytes + self.optimizer_bytes + per_sample * batch

    def bytes_per_step(self, batch: int) -> float:
        """An estimate of memory traffic, each tensor crossing memory once per touch.

        Weights are read in forward and backward, then read and written by the step (4×);
        gradients written in backward and read by the step (2×); optimizer state read and
        written (2×); saved activations written in forward and read in backward, and their
        gradients (about the same size) written and read in backward (4×); the input once.
        Caches are ignored (so too high for models that fit in cache) and unsaved
        intermediates are not counted (so too low for large ones).
        """
        fixed = 4 * self.weight_bytes + 2 * self.gradient_bytes + 2 * self.optimizer_bytes
        per_sample = (4 * self.activation_bytes + self.input_bytes) / self.batch_size
        return fixed + per_sample * batch


@dataclass(frozen=True)
class Calibration:
    """Measured on this machine: training throughput, its GEMM peak and memory bandwidth."""

    device: str
    device_type: str
    threads: int
    warmup_steps: int
    steps: int
    samples: int
    seconds: float  # of the timed steps only
    chunk_rates: tuple[float, ...]  # samples/s of each consecutive chunk of the timed steps
    eval_seconds: float  # one pass over the evaluation splits (what each epoch adds)
    peak_flops: float  # fp32 GEMM, measured
    memory_bandwidth: float  # bytes/s, measured (large tensor copy)
    memory_bytes: float  # of the device (host RAM for a CPU)

    @property
    def samples_per_second(self) -> float:
        """The median chunk: a burst of load from a neighbour moves it less than the mean."""
        return statistics.median(self.chunk_rates)

    @property
    def spread(self) -> float:
        """(fastest − slowest chunk) ÷ median: how noisy the machine was while measured."""
        return (max(self.chunk_rates) - min(self.chunk_rates)) / self.samples_per_second


def _tensor_bytes(tensors: Iterator[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _loss(model: nn.Module, data: Prepared, idx: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(*data.train.inputs(idx)), data.train.labels(idx))


def _forward_saving(
    model: nn.Module, data: Prepared, idx: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Loss of one forward, and the bytes autograd saved for backward (not the weights)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()  # views of one storage (a ReLU output saved twice) count once
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _loss(model, data, idx)
    return loss, sum(saved.values())


def measure_needs(
    data: Prepared, model_cfg: ModelConfig, optim_cfg: OptimConfig, batch_size: int,
    device: torch.device, seed: int,
) -> Needs:  # fmt: skip
    """Run one real training step of a fresh model on the first ``batch_size`` samples."""
    torch.manual_seed(seed)
    model = build_model(data.spec).to(device)
    n = min(batch_size, len(data.train))
    flops = count_train_flops(model, data.train, n)  # the same count as summary.json's
    idx = torch.arange(n, device=data.train.index_device)
    optimizer = build_optimizer(optim_cfg, model)
    model.train()
    loss, activations = _forward_saving(model, data, idx)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    trainable = [p for p in model.parameters() if p.requires_grad]
    state = (v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))
    return Needs(
        model=model_cfg.name,
        params=count_parameters(model),
        trainable_params=sum(p.numel() for p in trainable),
        batch_size=n,
        train_samples=len(data.train),
        eval_samples=sum(len(e) for e in data.evals.values()),
        flops_per_sample=flops,
        weight_bytes=_tensor_bytes(p for p in model.parameters()),
        gradient_bytes=_tensor_bytes(p.grad for p in trainable if p.grad is not None),
        optimizer_bytes=_tensor_bytes(state),
        activation_bytes=activations,
        input_bytes=_tensor_bytes(iter(data.train.inputs(idx))),
        ops_per_step=count_step_ops(model, data, optim_cfg, idx),
    )


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's C++ side prints start/stop lines on file descriptor 2: hide them."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def count_step_ops(
    model: nn.Module, data: Prepared, optim_cfg: OptimConfig, idx: torch.Tensor
) -> int:
    """Top-level ops with a kernel in one training step (a copy of ``model``; profiled).

    The optimizer is the one training builds (fused Adam on CPU and GPU); an optimizer without a
    fused kernel runs multi-tensor (``foreach``), as on a GPU, so the count is what a GPU would
    launch.
    """
    from torch.profiler import ProfilerActivity, profile

    twin = copy.deepcopy(model)
    optimizer = build_optimizer(optim_cfg, twin)
    for group in optimizer.param_groups:
        if not group.get("fused"):
            group["foreach"] = True

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        _loss(twin, data, idx).backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    step()  # the first step creates the optimizer state: not a typical step
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    top = [e for e in prof.events() if e.name.startswith("aten::")
           and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]  # fmt: skip
    return sum(1 for e in top if e.name not in NO_KERNEL_OPS)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(
    data: Prepared, model_cfg: ModelConfig, optim_cfg: OptimConfig, batch_size: int,
    device: torch.device, seed: int, steps: int = 30, warmup: int = 5,
) -> Calibration:  # fmt: skip
    """Time ``steps`` real training steps after ``warmup`` ones, as ``dlhpc train`` runs them
    (epoch order, augmentation, loss, backward, step), plus one evaluation pass."""
    torch.manual_seed(seed)
    model = build_model(data.spec).to(device)
    optimizer = build_optimizer(optim_cfg, model)
    model.train()
    batches = _batches(data, batch_size, seed)
    for _ in range(warmup):
        _train_step(model, optimizer, data, *next(batches))
    rates, samples, seconds = [], 0, 0.0
    for chunk in _chunks(steps, CHUNKS):
        _sync(device)  # one sync per chunk: a GPU runs ahead of the host in between
        n, start = 0, time.perf_counter()
        for _ in range(chunk):
            n += _train_step(model, optimizer, data, *next(batches))
        _sync(device)
        dt = time.perf_counter() - start
        rates.append(n / dt)
        samples, seconds = samples + n, seconds + dt
    eval_start = time.perf_counter()
    for split in data.evals.values():
        evaluate(model, split, data.spec.num_classes, 1024)
    eval_seconds = time.perf_counter() - eval_start
    return Calibration(
        device=device_name(device), device_type=device.type, threads=torch.get_num_threads(),
        warmup_steps=warmup, steps=steps, samples=samples, seconds=seconds,
        chunk_rates=tuple(rates), eval_seconds=eval_seconds,
        peak_flops=measured_peak(device)["flops"], memory_bandwidth=measure_bandwidth(device),
        memory_bytes=device_memory(device),
    )  # fmt: skip


def _chunks(steps: int, parts: int) -> list[int]:
    """``steps`` split into at most ``parts`` consecutive chunks of near-equal size."""
    parts = max(1, min(parts, steps))
    return [steps // parts + (1 if i < steps % parts else 0) for i in range(parts)]


def _batches(data: Prepared, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, int]]:
    """(indices, global step) of the training loop's batches, epoch after epoch."""
    slices = batch_slices(len(data.train), batch_size)
    step, epoch = 0, 0
    while True:
        order = data.train.order(seed, epoch, batch_size)
        for s in slices:
            yield order[s], step
            step += 1
        epoch += 1


def _train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, data: Prepared, idx: torch.Tensor,
    step: int,
) -> int:  # fmt: skip
    xb = data.train.inputs(idx)
    if data.augment is not None:
        xb = data.augment(xb, step, 0, len(idx))
    loss = F.cross_entropy(model(*xb), data.train.labels(idx), reduction="sum") / len(idx)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return len(idx)


def measure_bandwidth(device: torch.device, nbytes: int = 1 << 27, repeats: int = 5) -> float:
    """Best bytes/s of copying a large buffer (read + write) on ``device``: the memory roof."""
    n = nbytes // 4
    a = torch.ones(n, device=device)
    b = torch.empty_like(a)
    b.copy_(a)  # warm-up: pages touched
    best = 0.0
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        b.copy_(a)
        _sync(device)
        best = max(best, 2 * a.numel() * a.element_size() / (time.perf_counter() - t0))
    return best


def device_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not on a POSIX system
        return 0.0
