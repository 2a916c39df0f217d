"""Serving what `dlhpc optimize` wrote: int8 ONNX graphs and pruned weights from RUN/optimized/."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dlhpc.cli import main
from dlhpc.errors import ConfigError
from dlhpc.optimize import MeasureSettings, OptimizeOptions, optimize_run
from dlhpc.serve.app import create_app
from dlhpc.serve.config import ServeConfig
from dlhpc.serve.predictor import load_predictor
from tests.test_serve_support import infer_body, labels_of

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def optimized_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits MLP with int8-static, int8-dynamic and pruned-50 variants."""
    from dlhpc.cli.optimize import load_samples

    run = tmp_path_factory.mktemp("variants") / "mlp"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("checkpoint", "tb"))
    test, calibration, data = load_samples(run, None, calibrate=True)
    fast = MeasureSettings(rounds=1, per_round=1, batch=8, warmup=1)
    opts = OptimizeOptions(quantize=("static", "dynamic"), prune=0.5, threads=1, measure=fast)
    optimize_run(run, opts, test, calibration, data)
    return run


def digit_images(run: Path) -> np.ndarray:
    from dlhpc.cli.optimize import load_samples

    test, _, _ = load_samples(run, None, calibrate=False)
    return np.asarray(test.x.numpy()[:120, 0], np.uint8)  # (N, 28, 28) raw pixels


@pytest.mark.parametrize(
    ("variant", "backend"),
    [("int8-static", "onnx"), ("int8-dynamic", "onnx"), ("pruned-50", "eager")],
)
def test_a_variant_answers_like_the_fp32_model(
    optimized_run: Path, variant: str, backend: str
) -> None:
    x_NHW = digit_images(optimized_run)
    fp32 = load_predictor(optimized_run, "eager", threads=1).predict(x_NHW[:, None])
    want = [str(i) for i in fp32.argmax(1)]  # digits: label i is "i"
    predictor = load_predictor(optimized_run, backend, threads=1, variant=variant)
    cfg = ServeConfig(name="m", backend=backend, variant=variant)
    with TestClient(create_app(predictor, cfg)) as c:
        meta = c.get("/v2/models/m").json()
        assert meta["parameters"]["variant"] == variant
        assert meta["labels"] == [str(i) for i in range(10)]
        r = c.post("/v2/models/m/infer", json=infer_body(x_NHW))
        assert r.status_code == 200, r.text
        got = labels_of(r.json())
    agree = np.mean(np.array(got) == np.array(want))
    assert agree >= 0.9, (variant, agree)


def test_unknown_or_mismatched_variants_are_one_line_exit_2(
    optimized_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(optimized_run)
    cases = {
        ("--backend", "onnx", "--variant", "int4"): "int8-dynamic, int8-static, pruned-50",
        ("--variant", "int8-static"): "--backend onnx",  # an ONNX graph on eager
        ("--backend", "onnx", "--variant", "pruned-50"): "--backend eager",
        ("--variant", "../mlp"): "folder name",
    }
    for flags, hint in cases.items():
        assert main(["serve", run, *flags]) == 2, flags
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "error" in err and hint in err, (flags, err)
    with pytest.raises(ConfigError, match="it has none"):
        load_predictor(optimized_run / "optimized" / "int8-static", "onnx", variant="x")
