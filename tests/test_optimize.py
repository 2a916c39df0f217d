"""dlhpc optimize: ONNX export with parity, int8 quantization, magnitude pruning, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dlhpc.cli import main
from dlhpc.fsio import atomic_write_json
from dlhpc.models import ImageInput, ModelConfig, ModelSpec, TextInput, build_model
from dlhpc.models.artifact import WEIGHTS_FILE, load_model, write_weights
from dlhpc.optimize import (
    ExportError,
    MeasureSettings,
    OptimizeOptions,
    apply_magnitude_pruning,
    count_nonzeros,
    export_onnx,
    optimize_run,
)
from dlhpc.optimize.graphs import export_graph
from dlhpc.optimize.quantize import quantize_dynamic_onnx, quantize_static_onnx
from dlhpc.optimize.runtime import ort_session
from dlhpc.optimize.samples import feeds, synthetic_images, synthetic_tokens

FAST = MeasureSettings(rounds=2, per_round=2, batch=16, warmup=1)
DIGITS = ImageInput(1, 28, 28, (0.3,), (0.32,))
LABELS = tuple("0123456789")


def tiny_spec(name: str, **cfg: object) -> ModelSpec:
    if name in ("cnn", "mlp"):
        return ModelSpec(ModelConfig(name, **{"hidden": (32,), **cfg}), DIGITS, LABELS)  # type: ignore[arg-type]
    text = {"embed_dim": 16, "units": 16, "max_length": 12, "layers": 1, "heads": 2, **cfg}
    return ModelSpec(ModelConfig(name, **text), TextInput(120), ("a", "b", "c"))  # type: ignore[arg-type]


def make_run(path: Path, spec: ModelSpec, seed: int = 0) -> tuple[Path, nn.Module]:
    """A model directory (model.json + model.safetensors) with random weights."""
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    path.mkdir(parents=True)
    atomic_write_json(path / "model.json", spec.to_dict())
    write_weights(path / WEIGHTS_FILE, model)
    return path, model


def samples_for(spec: ModelSpec, n: int = 40):  # type: ignore[no-untyped-def]
    if isinstance(spec.input, TextInput):
        return synthetic_tokens(spec.input.vocab_size, n, max_len=20)  # some longer than 12
    return synthetic_images(spec.input.shape, n)


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("cnn", {}),
        ("mlp", {}),
        ("bag", {}),
        ("bag", {"bigrams": 50}),
        ("lstm", {}),
        ("transformer", {}),
    ],
    ids=["cnn", "mlp", "bag", "bag-bigrams", "lstm", "transformer"],
)
def test_export_matches_eager_at_any_batch_size(
    name: str, cfg: dict[str, object], tmp_path: Path
) -> None:
    spec = tiny_spec(name, **cfg)
    _, model = make_run(tmp_path / "run", spec)
    s = samples_for(spec)
    with torch.no_grad():  # the export-friendly forward is the same function as the model's
        assert torch.allclose(
            export_graph(model)(*s.inputs(0, 9)), model(*s.inputs(0, 9)), atol=1e-5
        )
    parity = export_onnx(model, s, tmp_path / "model.onnx", threads=1)
    assert parity.passed and parity.samples == 40 and parity.argmax_agreement == 1.0
    assert parity.max_abs_diff < 1e-4
    session = ort_session(tmp_path / "model.onnx", threads=1)
    for start, stop in ((0, 1), (3, 10)):  # the batch axis is dynamic: batch 1 and batch 7
        (got,) = session.run(None, feeds(s, start, stop))
        with torch.no_grad():
            want = model(*s.inputs(start, stop)).numpy()
        assert got.shape == want.shape == (stop - start, spec.num_classes)
        np.testing.assert_allclose(got, want, atol=1e-4)
    if isinstance(spec.input, TextInput):  # empty texts, also a batch of nothing but those
        for ids, offsets in (([], [0, 0]), ([], [0, 0, 0]), ([5], [0, 0, 1])):
            x = torch.tensor(ids, dtype=torch.int64), torch.tensor(offsets, dtype=torch.int64)
            (got,) = session.run(None, {"ids": x[0].numpy(), "offsets": x[1].numpy()})
            with torch.no_grad():
                np.testing.assert_allclose(got, model(*x).numpy(), atol=1e-4)


def test_image_graph_takes_raw_uint8_pixels(tmp_path: Path) -> None:
    _, model = make_run(tmp_path / "run", tiny_spec("cnn"))
    s = synthetic_images((1, 28, 28), 8, seed=3)
    export_onnx(model, s, tmp_path / "model.onnx", threads=1)
    session = ort_session(tmp_path / "model.onnx", threads=1)
    (inp,) = session.get_inputs()
    assert inp.name == "pixels" and inp.type == "tensor(uint8)"
    assert inp.shape[1:] == [1, 28, 28] and not isinstance(inp.shape[0], int)
    x = s.x.numpy()  # 0–255: standardization must happen inside the graph
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"pixels": x})[0], want, atol=1e-4)


class _Broken(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * 1.5  # a subtly wrong graph: runs fine, wrong logits


def test_a_failed_parity_check_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run, model = make_run(tmp_path / "run", tiny_spec("mlp"))
    monkeypatch.setattr("dlhpc.optimize.onnx_export.export_graph", lambda m: _Broken(m).eval())
    with pytest.raises(ExportError, match="parity"):
        export_onnx(model, synthetic_images((1, 28, 28), 16), tmp_path / "x.onnx", threads=1)
    assert not (tmp_path / "x.onnx").exists()

    assert main(["optimize", str(run), "--export", "onnx", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "parity" in err
    assert not (run / "optimized").exists()  # no variant, no staging directory, no folder


# --------------------------------------------------------------------------- quantization


@pytest.fixture()
def digits_run(trained_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "mlp"
    shutil.copytree(trained_run, run)
    return run


def test_int8_variants_keep_the_accuracy_on_digits(digits_run: Path) -> None:
    from dlhpc.cli.optimize import load_samples

    test, calibration, data = load_samples(digits_run, None, calibrate=True)
    opts = OptimizeOptions(quantize=("dynamic", "static"), threads=1, measure=FAST)
    result = optimize_run(digits_run, opts, test, calibration, data)
    rows = {r["name"]: r for r in result["variants"]}
    assert set(rows) == {"fp32", "int8-dynamic", "int8-static"}
    fp32 = rows["fp32"]["accuracy"]
    assert fp32 > 0.8
    for name in ("int8-dynamic", "int8-static"):
        r = rows[name]
        assert abs(r["accuracy_delta_pts"]) <= 3.0, r
        assert r["eager"] is None and r["onnxruntime"]["p50_ms"] > 0
        # A deployment needs only the folder: ONNX Runtime and model.json's labels.
        folder = digits_run / "optimized" / name
        labels = json.loads((folder / "model.json").read_text())["labels"]
        session = ort_session(folder / "model.onnx", threads=1)
        pred = session.run(None, {"pixels": test.x.numpy()})[0].argmax(1)
        assert np.mean(np.array(labels)[pred] == np.array(labels)[test.y.numpy()]) == r["accuracy"]
    assert (digits_run / "optimized" / "report.md").is_file()
    assert not (digits_run / "optimized" / "onnx").exists()  # kept only with --export onnx


def test_int8_file_is_under_30_percent_of_fp32(tmp_path: Path) -> None:
    # An MLP 784-256-128-10 (235k weights): large enough that weights, not graph, set the size.
    run, model = make_run(tmp_path / "run", tiny_spec("mlp", hidden=(256, 128)))
    s = synthetic_images((1, 28, 28), 64)
    export_onnx(model, s, tmp_path / "fp32.onnx", threads=1)
    quantize_dynamic_onnx(tmp_path / "fp32.onnx", tmp_path / "dynamic.onnx")
    quantize_static_onnx(tmp_path / "fp32.onnx", tmp_path / "static.onnx", s)
    fp32 = (run / WEIGHTS_FILE).stat().st_size
    for name in ("dynamic", "static"):
        ratio = (tmp_path / f"{name}.onnx").stat().st_size / fp32
        assert ratio <= 0.30, (name, ratio)


# --------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("name", ["cnn", "mlp", "lstm"])
def test_unstructured_pruning_reaches_the_requested_sparsity(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_spec(name))
    params_before, _ = count_nonzeros(model)
    stats = apply_magnitude_pruning(model, 0.6)
    assert stats.sparsity == pytest.approx(0.6, abs=1e-3)
    for pname, p in model.named_parameters():
        if pname in stats.tensors:
            assert int((p == 0).sum()) == round(0.6 * p.numel()), pname
    params, nonzeros = count_nonzeros(model)
    assert (stats.params, stats.nonzeros) == (params, nonzeros) and params == params_before
    assert nonzeros <= params - stats.zeroed


def test_structured_pruning_zeroes_whole_channels_but_not_the_head() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_spec("cnn"))
    stats = apply_magnitude_pruning(model, 0.25, structured=True)
    body: Any = model.body
    for conv, out in ((body.conv1, 32), (body.conv2, 64), (body.conv3, 64)):
        dead = (conv.weight.flatten(1).abs().sum(1) == 0) & (conv.bias == 0)
        assert int(dead.sum()) == out // 4
    assert int((body.fc1.weight.abs().sum(1) == 0).sum()) == 16
    assert int((body.fc2.weight.abs().sum(1) == 0).sum()) == 0  # every class keeps its row
    assert stats.channels_zeroed == 8 + 16 + 16 + 16
    assert "body.fc2.weight" not in stats.tensors


def test_a_pruned_variant_is_a_loadable_model(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path / "run", tiny_spec("cnn"))
    opts = OptimizeOptions(prune=0.5, threads=1, measure=FAST)
    result = optimize_run(run, opts, synthetic_images((1, 28, 28), 24))
    (row,) = [r for r in result["variants"] if r["name"] == "pruned-50"]
    model, spec = load_model(run / "optimized" / "pruned-50")
    params, nonzeros = count_nonzeros(model)
    assert (row["params"], row["nonzeros"]) == (params, nonzeros)
    assert nonzeros < 0.6 * params and row["accuracy"] is None  # synthetic data: no labels
    assert row["eager"]["p50_ms"] > 0 and row["onnxruntime"]["p50_ms"] > 0
    assert spec.extra["variant"]["pruning"]["amount"] == 0.5


# --------------------------------------------------------------------------- text deployment


def test_text_variant_runs_with_tokenizers_and_onnxruntime_alone(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from dlhpc.data.tokenizer import train_tokenizer

    texts = ["the ball and the goal", "python code on the cpu", "bake the bread", "a"]
    tok = train_tokenizer(texts * 3, vocab_size=60)
    spec = ModelSpec(ModelConfig("bag", embed_dim=8, units=8), TextInput(tok.get_vocab_size()),
                     ("sports", "tech", "food"))  # fmt: skip
    run, model = make_run(tmp_path / "run", spec)
    tok.save(str(run / "tokenizer.json"))
    opts = OptimizeOptions(export_onnx=True, quantize=("dynamic",), threads=1, measure=FAST)
    optimize_run(run, opts, synthetic_tokens(spec.input.vocab_size, 16))  # type: ignore[union-attr]
    for name in ("onnx", "int8-dynamic"):
        folder = run / "optimized" / name
        assert {p.name for p in folder.iterdir()} == {"model.onnx", "model.json", "tokenizer.json"}
        enc = Tokenizer.from_file(str(folder / "tokenizer.json")).encode_batch(
            texts, add_special_tokens=False
        )
        ids = np.array([i for e in enc for i in e.ids], dtype=np.int64)
        offsets = np.cumsum([0] + [len(e.ids) for e in enc]).astype(np.int64)
        got = ort_session(folder / "model.onnx", 1).run(None, {"ids": ids, "offsets": offsets})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(ids), torch.from_numpy(offsets)).numpy()
        assert got.shape == (4, 3)
        assert (got.argmax(1) == want.argmax(1)).all()


# --------------------------------------------------------------------------- CLI


@pytest.fixture()
def fast_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dlhpc.cli.optimize.MEASURE", FAST)


def test_cli_writes_variants_report_and_json(
    digits_run: Path, fast_cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["optimize", str(digits_run), "--export", "onnx", "--quantize", "dynamic",
            "--prune", "0.5", "--threads", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    names = [r["name"] for r in result["variants"]]
    assert names == ["fp32", "onnx", "int8-dynamic", "pruned-50"]
    opt = digits_run / "optimized"
    assert (opt / "onnx" / "model.onnx").is_file()  # where `dlhpc serve --backend onnx` looks
    assert (opt / "pruned-50" / WEIGHTS_FILE).is_file()
    report = (opt / "report.md").read_text()
    assert "| int8-dynamic |" in report and "threads: 1" in report
    assert json.loads((opt / "report.json").read_text())["variants"][0]["name"] == "fp32"
    assert result["data"] == "digits" and result["threads"] == 1
    assert not [p for p in opt.iterdir() if p.name.startswith(".")]


def cli_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors (an unknown choice)
        return int(e.code or 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--export", "onnx"], "no such run directory"),
        (["--prune", "1.5"], "--prune AMOUNT"),
        (["--prune", "0"], "--prune AMOUNT"),
        (["--quantize", "float8"], "invalid choice"),
        (["--prune-structured"], "needs --prune"),
        ([], "nothing to do"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "missing" if "no such" in message else tmp_path
    assert cli_code(["optimize", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_cli_static_quantization_of_a_text_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = make_run(tmp_path / "run", tiny_spec("bag"))
    assert main(["optimize", str(run), "--quantize", "static"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--quantize dynamic" in err
    assert not (run / "optimized").exists()
