"""Adam and AdamW on PyTorch's fused kernels, without ``torch.optim``'s start-up cost.

    opt = FusedAdam(model.parameters(), lr=1e-3)          # = torch.optim.Adam(..., fused=True)
    opt = FusedAdam(model.parameters(), lr=1e-3, weight_decay=0.01, decoupled=True)  # AdamW

The arithmetic is PyTorch's own: each step is one call of ``torch._fused_adam_`` (or
``torch._fused_adamw_``) per device and dtype, the kernels ``torch.optim.Adam(fused=True)``
calls, with the same state (``step`` as a float tensor beside the parameter, ``exp_avg``,
``exp_avg_sq``) and the same ``state_dict`` layout, so checkpoints move freely between the two
and the weights after any number of steps are bit-identical (tests/test_optim.py).

Why not ``torch.optim.Adam`` itself: its constructor, ``step``, ``zero_grad`` and
``(load_)state_dict`` are wrapped to keep ``torch.compile`` out, and the wrappers import
``torch._dynamo`` on first use — about 2 s of a 2-core machine's time in every training process
that never compiles anything, a fifth of a small text run end to end
(``benchmarks/text_bag_cpu_20261128.md``). This class subclasses ``torch.optim.Adam`` for its
type only and replaces every method the training loop and the checkpoint call; none of them
touches that machinery. (It is not meant for ``torch.compile``-d optimizer steps, which dlhpc
never uses; hooks registered on it are not called.)
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["FusedAdam", "FusedAdamW"]

_HOOKS = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)


class FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)``; with ``decoupled=True``, AdamW's weight decay.

    A subclass of ``torch.optim.Adam`` for ``isinstance``; ``torch.optim.Adam.__init__`` is
    deliberately not called (see the module docstring).
    Parameters must be floating point and on one device type with fused kernels (CPU, CUDA).
    """

    default_weight_decay = 0.0  # torch.optim.Adam's

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | None = None,
        decoupled: bool | None = None,
    ) -> None:
        if decoupled is None:
            decoupled = isinstance(self, torch.optim.AdamW)
        if weight_decay is None:
            weight_decay = self.default_weight_decay
        self.defaults: dict[str, Any] = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": False,
            "maximize": False,
            "foreach": None,
            "capturable": False,
            "differentiable": False,
            "fused": True,
            "decoupled_weight_decay": decoupled,
        }
        for name in _HOOKS:
            setattr(self, name, OrderedDict())
        self.state: defaultdict[torch.Tensor, Any] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self.add_param_group({"params": params})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        ps = [params] if isinstance(params, torch.Tensor) else list(params)
        if not ps:
            raise ValueError("optimizer got an empty parameter list")
        if not all(isinstance(p, torch.Tensor) for p in ps):
            raise TypeError("FusedAdam takes tensors (one group); got " + type(ps[0]).__name__)
        seen = {id(q) for g in self.param_groups for q in g["params"]}
        if len({id(p) for p in ps}) != len(ps) or seen & {id(p) for p in ps}:
            raise ValueError("some parameters appear in more than one parameter group")
        every = [q for g in self.param_groups for q in g["params"]] + ps
        if not all(p.is_floating_point() for p in ps) or len({p.device.type for p in every}) != 1:
            raise ValueError("fused Adam needs floating-point parameters on one device type")
        self.param_groups.append({**self.defaults, **param_group, "params": ps})

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Optimizer.__setstate__ would wrap this class's step in profiling hooks (for every
        # instance); an unpickled FusedAdam is just its attributes.
        self.__dict__.update(state)
        for name in _HOOKS:
            if not hasattr(self, name):
                setattr(self, name, OrderedDict())

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # One kernel call per (device, dtype), as torch.optim groups them.
            parts: dict[tuple[torch.device, torch.dtype], list[list[torch.Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Adam does not support sparse gradients")
                st = self.state[p]
                if not st:
                    # float32 beside the parameter, as torch's fused Adam keeps it
                    st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                tensors = (p, p.grad, st["exp_avg"], st["exp_avg_sq"], st["step"])
                lists = parts.setdefault((p.device, p.dtype), [[] for _ in tensors])
                for lst, t in zip(lists, tensors, strict=True):
                    lst.append(t)
            kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
            beta1, beta2 = group["betas"]
            for params, grads, exp_avgs, exp_avg_sqs, steps in parts.values():
                torch._foreach_add_(steps, 1)
                kernel(
                    params, grads, exp_avgs, exp_avg_sqs, [], steps,
                    amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                    weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                    grad_scale=None, found_inf=None,
                )  # fmt: skip
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:  # as torch.optim does: a gradient may be a view (DDP's bucket views)
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Optimizer.state_dict``'s layout: parameters numbered through the
        groups, state keyed by number, groups without their tensors."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": [index[id(p)] for p in group["params"]]})  # fmt: skip
        state = {index[id(p)]: dict(st) for p, st in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this class or of ``torch.optim.Adam``/``AdamW`` (any
        implementation): the moments go to their parameter's device and dtype, ``step`` beside
        the parameter (where the fused kernel reads it); the hyper-parameters are the saved ones,
        the implementation stays fused. AdamW stays AdamW. Variants this class does not compute
        (amsgrad, maximize, capturable, differentiable) are refused."""
        saved = state_dict["param_groups"]
        for theirs in saved:
            unsupported = [k for k in _UNSUPPORTED if theirs.get(k)]
            if unsupported:
                raise ValueError(f"fused Adam here does not support {', '.join(unsupported)}")
        if len(saved) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for mine, theirs in zip(self.param_groups, saved, strict=True):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size "
                    "of optimizer's group"
                )
        self.state = defaultdict(dict)
        for mine, theirs in zip(self.param_groups, saved, strict=True):
            for p, i in zip(mine["params"], theirs["params"], strict=True):
                st = state_dict["state"].get(i, state_dict["state"].get(str(i)))
                if st is None:
                    continue
                self.state[p] = {k: _restore(k, v, p) for k, v in st.items()}
        adamw = isinstance(self, torch.optim.AdamW)
        self.param_groups = [
            {**self.defaults, **{k: v for k, v in theirs.items() if k != "params"},
             "params": mine["params"], "fused": True, "foreach": None,
             **({"decoupled_weight_decay": True} if adamw else {})}
            for mine, theirs in zip(self.param_groups, saved, strict=True)
        ]  # fmt: skip


_UNSUPPORTED = ("amsgrad", "maximize", "capturable", "differentiable")


def _restore(key: str, value: Any, param: torch.Tensor) -> Any:
    """A loaded state entry where the fused kernel wants it: ``step`` a float32 tensor beside
    the parameter (older state dicts hold a plain number), moments in the parameter's dtype."""
    if key == "step":
        return torch.as_tensor(value, dtype=torch.float32).to(param.device)
    if isinstance(value, torch.Tensor):
        return value.to(device=param.device, dtype=param.dtype)
    return value


class FusedAdamW(FusedAdam, torch.optim.AdamW):
    """``torch.optim.AdamW(fused=True)``: ``FusedAdam`` with decoupled weight decay."""

    default_weight_decay = 1e-2  # torch.optim.AdamW's
