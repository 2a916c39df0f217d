"""Optimizers from ``OptimConfig``: Adam (the tutorial's), AdamW, SGD with momentum.

``build_optimizer(cfg, model)`` makes two choices that no flag asks for, from the model and its
device::

    opt = build_optimizer(OptimConfig(lr=5e-2), BagClassifier(10_000, 12, sparse=True))
    opt.param_groups[0]["lr"] = 1e-2        # every group, both parts: what the loop does
    opt.step(); opt.state_dict()            # one optimizer to the loop and the checkpoint

* **Sparse embedding tables** (``nn.Embedding``/``nn.EmbeddingBag`` built with ``sparse=True``)
  are stepped by ``torch.optim.SparseAdam``: only the rows the batch touched, instead of a dense
  Adam update of the whole table. The other parameters get the configured optimizer (with
  ``--optimizer sgd`` too); ``SparseDenseOptimizer`` joins the two. SparseAdam is "lazy" Adam:
  an untouched row keeps its value and its moments, where dense Adam keeps moving it on decaying
  momentum. It has no weight decay, so ``weight_decay`` applies to the dense parameters only:
  decaying every row each step is the dense work sparse updates avoid, and decaying only the
  touched rows would penalise frequent words more than rare ones. ``bag`` keeps dense gradients
  by default: at its recipe SparseAdam trains at 2.0× the default dense Adam's samples/s but
  1.8 points less accurately (every seed), while fused dense Adam gives 2.3× at the same
  accuracy, so sparse is 0.8× of that (``benchmarks/bag_sparse_cpu_20261128.md``). Sparse pays
  off for big tables: with 100,000 hashed-bigram buckets it is 1.6× fused dense Adam.
* **Adam's implementation**: ``fused`` (one kernel over all tensors) on CUDA always, and on the
  CPU where measured faster (``FUSED_DEVICES``); otherwise PyTorch's default. The choice is the
  device's, not the run's: it is re-applied when a checkpoint from another device is loaded.
  Fused Adam/AdamW is ``engine.fused_adam.FusedAdam``: PyTorch's fused kernels, bit-identical to
  ``torch.optim.Adam(fused=True)``, without the ≈ 2 s import of ``torch._dynamo`` that
  ``torch.optim``'s own classes cost every process on first use.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from dlhpc.engine.config import OptimConfig
from dlhpc.engine.fused_adam import FusedAdam, FusedAdamW
from dlhpc.errors import ConfigError

# Device types where fused Adam/AdamW is the fastest implementation. CUDA: PyTorch's fastest
# path (one launch for all tensors). CPU: the step alone takes 0.2-0.3× the time of the default
# single-tensor loop for bag and cnn; bag trains at 2.3× the samples/s, cnn (where the step is a
# sliver of the time) within noise of 1.0× (benchmarks/bag_sparse_cpu_20261128.md).
FUSED_DEVICES: tuple[str, ...] = ("cuda", "cpu")

__all__ = [
    "FUSED_DEVICES",
    "SparseDenseOptimizer",
    "adam_fused",
    "build_optimizer",
    "sparse_gradients_reduce",
    "split_sparse_parameters",
]


def _sparse_embeddings(model: nn.Module) -> list[nn.Embedding | nn.EmbeddingBag]:
    return [m for m in model.modules()
            if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse]  # fmt: skip


def split_sparse_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(dense, sparse)`` trainable parameters; sparse = the weights of sparse-gradient
    embeddings that no other module shares (a tied weight also gets dense gradients)."""
    sparse_modules = {id(m) for m in _sparse_embeddings(model)}
    sparse_ids: set[int] = set()
    dense_ids: set[int] = set()
    for m in model.modules():
        owned = sparse_ids if id(m) in sparse_modules else dense_ids
        owned.update(id(p) for p in m.parameters(recurse=False))
    sparse_ids -= dense_ids
    trainable = [p for p in model.parameters() if p.requires_grad]
    return (
        [p for p in trainable if id(p) not in sparse_ids],
        [p for p in trainable if id(p) in sparse_ids],
    )


def sparse_gradients_reduce() -> bool:
    """Whether DDP can all-reduce sparse gradients here: always in one process, and on gloo
    (checked with 2 ranks, tests/test_optim.py); NCCL has no sparse all-reduce
    (pytorch/pytorch#22400), so under it sparse tables must train dense."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return True
    return str(tdist.get_backend()) == "gloo"


def adam_fused(params: Iterable[torch.Tensor]) -> bool | None:
    """Adam's ``fused`` argument: True where fused is the fastest and allowed, else None
    (PyTorch's default: foreach on CUDA, single-tensor on the CPU; False would force the latter).

    Fused needs every parameter floating point, on one device type that has the kernels.
    """
    ps = list(params)
    types = {p.device.type for p in ps}
    if len(types) == 1 and types <= set(FUSED_DEVICES) and all(p.is_floating_point() for p in ps):
        return True
    return None


def _dense_optimizer(cfg: OptimConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    fused = adam_fused(params)
    if fused:
        fast = FusedAdamW if cfg.optimizer == "adamw" else FusedAdam
        return fast(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    adam = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    opt.register_load_state_dict_post_hook(_after_loading(fused))
    return opt


def _after_loading(fused: bool | None) -> Callable[[torch.optim.Optimizer], None]:
    """Fix up Adam after ``load_state_dict``: use this device's implementation, not the one
    saved with the groups, and keep ``step`` where it belongs — on the parameter's device when
    fused, on the CPU otherwise (a checkpoint written on another device may have it elsewhere).
    (The moments' memory layout, which fused Adam needs to match the parameter's, is restored by
    ``engine.checkpoint``.)"""

    def hook(opt: torch.optim.Optimizer) -> None:
        for group in opt.param_groups:
            group["fused"], group["foreach"] = fused, None
            on_device = bool(group.get("fused") or group.get("capturable"))
            for p in group["params"]:
                step = opt.state.get(p, {}).get("step")
                if isinstance(step, torch.Tensor):
                    opt.state[p]["step"] = step.to(p.device if on_device else "cpu")

    return hook


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer for ``model``'s trainable parameters (build it before wrapping in DDP).

    Where DDP cannot reduce sparse gradients (``sparse_gradients_reduce``), the model's sparse
    embeddings are switched to dense gradients (``sparse = False``) and get the dense optimizer.
    """
    if not sparse_gradients_reduce():
        for m in _sparse_embeddings(model):
            m.sparse = False
    dense, sparse = split_sparse_parameters(model)
    if not sparse:
        return _dense_optimizer(cfg, dense)
    table = torch.optim.SparseAdam(sparse, lr=cfg.lr)  # no weight decay: see the docstring
    if not dense:
        return table
    return SparseDenseOptimizer(_dense_optimizer(cfg, dense), table)


class SparseDenseOptimizer(torch.optim.Optimizer):
    """Two optimizers as one: ``dense`` (Adam, AdamW or SGD) and ``sparse`` (SparseAdam).

    ``param_groups`` is the dense part's groups, then the sparse part's — the same dicts, so an
    ``lr`` set by the loop reaches both. ``state_dict`` has the standard layout (parameter ids
    numbered through both parts, dense first), so the checkpoint flattens it like any optimizer
    and ``load_state_dict`` splits it back.
    """

    def __init__(self, dense: torch.optim.Optimizer, sparse: torch.optim.Optimizer) -> None:
        self.parts = (dense, sparse)
        self._joined = False
        every = [p for part in self.parts for g in part.param_groups for p in g["params"]]
        super().__init__(every, defaults={})
        self.param_groups = [g for part in self.parts for g in part.param_groups]
        self._joined = True

    @property  # type: ignore[override]
    def state(self) -> defaultdict[torch.Tensor, Any]:
        """Both parts' per-parameter state (a merged view: read it, do not write it)."""
        merged: defaultdict[torch.Tensor, Any] = defaultdict(dict)
        for part in self.parts:
            merged.update(part.state)
        return merged

    @state.setter
    def state(self, value: defaultdict[torch.Tensor, Any]) -> None:
        pass  # the parts own the state; Optimizer.__init__ assigns an empty one

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self._joined:
            raise NotImplementedError("add a group to one of .parts, then rebuild the pair")
        super().add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts:
            part.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        state: dict[int, Any] = {}
        groups: list[dict[str, Any]] = []
        offset = 0
        for part in self.parts:
            sd = part.state_dict()
            state.update({offset + int(i): s for i, s in sd["state"].items()})
            groups += [{**g, "params": [offset + i for i in g["params"]]}
                       for g in sd["param_groups"]]  # fmt: skip
            offset += sum(len(g["params"]) for g in part.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups, state = state_dict["param_groups"], state_dict["state"]
        if len(groups) != len(self.param_groups):
            raise ConfigError(
                f"the saved optimizer has {len(groups)} parameter groups, this one "
                f"{len(self.param_groups)} (dense + sparse embedding): was the checkpoint "
                "written with dense embedding gradients?"
            )
        start = offset = 0
        for part in self.parts:
            mine = groups[start : start + len(part.param_groups)]
            n = sum(len(g["params"]) for g in mine)
            part.load_state_dict({
                "state": {int(i) - offset: s for i, s in state.items()
                          if offset <= int(i) < offset + n},
                "param_groups": [{**g, "params": [i - offset for i in g["params"]]}
                                 for g in mine],
            })  # fmt: skip
            start, offset = start + len(part.param_groups), offset + n
        # Optimizer.load_state_dict replaces each part's group dicts: share the new ones.
        self.param_groups = [g for part in self.parts for g in part.param_groups]
