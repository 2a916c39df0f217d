"""``dlhpc reference gd|mlp|lstm|check``: the tutorial's math in NumPy, runnable.

dlhpc reference gd                 # least squares by gradient descent vs numpy.linalg.lstsq
dlhpc reference mlp --data digits  # the reference MLP with hand-written backprop (≥ 95%)
dlhpc reference lstm               # the reference LSTM learns a sequence task by BPTT
dlhpc reference check              # finite-difference errors of every gradient
"""

from __future__ import annotations

import argparse
from typing import Any

from dlhpc.cli.common import (
    add_output_flags,
    emit,
    positive_float,
    positive_int,
    positive_int_list,
)
from dlhpc.errors import DlhpcError


def _curve(values: list[float], every: int = 1) -> str:
    return " ".join(f"{v:.4g}" for v in values[::every])


def _cmd(a: argparse.Namespace) -> int:
    from dlhpc.reference import runner

    what = a.what
    if what == "gd":
        r = runner.run_gd(a.seed, a.iterations, a.lr if a.lr is not None else 0.1)
        headline = (f"gradient descent: loss {r['final_loss']:.6g} after {a.iterations} steps; "
                    f"|θ − lstsq| = {r['theta_error_vs_lstsq']:.3g}\nloss curve: "
                    f"{_curve(r['loss_curve'], max(1, a.iterations // 10))}")  # fmt: skip
        if r["diverged"]:
            headline += (f"\ndiverged: α = {r['alpha']:g} is above 2/λmax(XᵀX/m) = "
                         f"{r['alpha_max']:.3g}, the largest step that converges")  # fmt: skip
        r = {k: v for k, v in r.items() if k not in ("theta", "theta_lstsq")}
    elif what == "mlp":
        r = _run_mlp(a)
        headline = (f"reference MLP {r['sizes']}: test accuracy {r['test_accuracy']:.4f} in "
                    f"{r['seconds']:.1f} s\nloss per epoch: {_curve(r['loss_curve'])}")  # fmt: skip
    elif what == "lstm":
        r = runner.run_lstm(a.seed, epochs=a.epochs or 10)
        headline = (f"reference LSTM ({r['task']}): test accuracy {r['accuracy']:.4f} in "
                    f"{r['seconds']:.1f} s\nloss per epoch: {_curve(r['loss_curve'])}")  # fmt: skip
    else:
        r = runner.run_check(a.seed)
        worst = max(r.values())
        headline = "finite differences vs hand-written gradients (relative error, float64):"
        if worst >= 1e-6:
            emit(a, r, headline)
            raise DlhpcError(f"gradient check failed: worst relative error {worst:.3g} ≥ 1e-6")
    emit(a, r, headline)
    return 0


def _run_mlp(a: argparse.Namespace) -> dict[str, Any]:
    from dlhpc.data import DataConfig, load_images
    from dlhpc.reference import runner

    splits = load_images(DataConfig(a.data, augment="none"))
    if splits.test is None:
        raise DlhpcError(f"{a.data}: has no test split")
    x_tr = splits.train.x.flatten(1).double().numpy()
    x_te = splits.test.x.flatten(1).double().numpy()
    kwargs: dict[str, Any] = {"hidden": a.hidden, "seed": a.seed, "optimizer": a.optimizer}
    kwargs.update({k: v for k, v in (("epochs", a.epochs), ("lr", a.lr)) if v is not None})
    try:  # small matrices: BLAS threads spin more than they help (see the benchmark)
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return runner.run_mlp(x_tr, splits.train.y.numpy(), x_te, splits.test.y.numpy(), **kwargs)
    with threadpool_limits(limits=1, user_api="blas"):
        return runner.run_mlp(x_tr, splits.train.y.numpy(), x_te, splits.test.y.numpy(), **kwargs)


def add_reference(sub: Any) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("reference", help="the tutorial's math in NumPy, runnable",
                       description=__doc__, formatter_class=raw)  # fmt: skip
    p.add_argument("what", choices=("gd", "mlp", "lstm", "check"), help="what to run")
    p.add_argument("--data", default="digits", help="mlp: image source (digits)")
    p.add_argument(
        "--hidden", type=positive_int_list, default=(128,), help="mlp: hidden sizes (128)"
    )
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="mlp (adam)")
    p.add_argument("--epochs", type=positive_int, help="mlp (20), lstm (10)")
    p.add_argument("--iterations", type=positive_int, default=500, help="gd: steps (500)")
    p.add_argument("--lr", type=positive_float, help="gd: alpha (0.1); mlp: lr (1e-3)")
    p.add_argument("--seed", type=int, default=0, help="(0)")
    add_output_flags(p)
    p.set_defaults(func=_cmd)


COMMANDS = (add_reference,)
