"""Fine-tuning from a pretrained run: --init-from, a new head, --freeze backbone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dlhpc.cli import main
from dlhpc.data import DataConfig, load_images
from dlhpc.engine.finetune import apply_freeze, apply_init, head_names
from dlhpc.errors import ConfigError
from dlhpc.models.artifact import load_model


def five_digits(path: Path) -> Path:
    """Digits 0–4 only: a task with a different number of classes."""
    s = load_images(DataConfig("digits", augment="none"))
    assert s.test is not None
    tr, te = s.train.y < 5, s.test.y < 5
    np.savez(path, x_train=s.train.x[tr, 0].numpy(), y_train=s.train.y[tr].numpy(),
             x_test=s.test.x[te, 0].numpy(), y_test=s.test.y[te].numpy())  # fmt: skip
    return path


def test_init_copies_matching_weights(trained_run: Path) -> None:
    base, spec = load_model(trained_run)
    fresh, _ = load_model(trained_run)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    loaded, kept = apply_init(fresh, spec.config.name, trained_run)
    assert kept == [] and len(loaded) == len(base.state_dict())
    for k, v in base.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k])
    with pytest.raises(ConfigError, match="a mlp run"):
        apply_init(fresh, "cnn", trained_run)


def test_freeze_backbone_keeps_only_the_head(trained_run: Path) -> None:
    model, _ = load_model(trained_run)
    head = head_names(model)
    assert head == {"body.layers.2.weight", "body.layers.2.bias"}
    trainable = apply_freeze(model, "backbone")
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in head)


@pytest.mark.slow
def test_finetune_onto_fewer_classes_with_a_frozen_backbone(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = five_digits(tmp_path / "five.npz")
    run = tmp_path / "ft"
    argv = ["train", "mlp", "--data", str(data), "--hidden", "32",
            "--init-from", str(trained_run), "--freeze", "backbone", "--epochs", "2",
            "--out", str(run), "--quiet", "--json"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["test_accuracy"] > 0.8
    base, new = load_file(trained_run / "model.safetensors"), load_file(run / "model.safetensors")
    assert torch.equal(base["body.layers.0.weight"], new["body.layers.0.weight"])  # frozen
    assert new["body.layers.2.weight"].shape == (5, 32)  # a new head for 5 classes
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["init_from"] == str(trained_run) and cfg["train"]["freeze"] == "backbone"


def test_unreadable_pretrained_weights_are_one_line(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    out = tmp_path / "new"
    argv = ["train", "mlp", "--data", "digits", "--init-from", str(broken), "--out", str(out)]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{weights}: unreadable weights" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_freeze_needs_init(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "mlp", "--data", "digits", "--freeze", "backbone"]) == 2
    assert "--init-from" in capsys.readouterr().err
