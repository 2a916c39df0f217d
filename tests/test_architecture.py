"""The layers of design.md: imports point one way only. Walks every import in src/dlhpc."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dlhpc"
BASE = {"errors", "fsio", "__init__"}  # leaves any layer but reference may use (__init__: version)

# layer -> the dlhpc layers it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "reference": set(),
    "models": {"errors"},
    "data": BASE,
    "engine": BASE | {"models", "data"},
    "optimize": BASE | {"models"},
    "serve": BASE | {"models", "optimize"},
    "bench": BASE | {"reference", "models", "data", "engine", "optimize", "serve"},
    "cli": BASE | {"reference", "models", "data", "engine", "optimize", "serve", "bench"},
    "__main__": {"cli"},
    "errors": set(),
    "fsio": set(),
    "__init__": set(),
}
# third-party packages a layer may not touch
FORBIDDEN_THIRD_PARTY = {
    "reference": lambda top: top not in {"numpy"} and top not in sys.stdlib_module_names,
    # models/ reads and writes only its own weights (artifact.py, safetensors)
    "models": lambda top: top in {"PIL", "sklearn", "fastapi", "onnxruntime", "tokenizers"},
}


def layer_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    pkg = ".".join(("dlhpc", *path.relative_to(SRC).parts[:-1]))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            names.append(mod)
    return names


FILES = sorted(SRC.rglob("*.py"))


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = {layer_of(f) for f in FILES} - set(ALLOWED)
    assert not unknown, f"modules outside the layers of design.md: {unknown}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    layer = layer_of(path)
    bad = []
    for name in imports_of(path):
        parts = name.split(".")
        if parts[0] == "dlhpc":
            target = parts[1] if len(parts) > 1 else "__init__"
            if target != layer and target not in ALLOWED[layer]:
                bad.append(name)
        elif layer in FORBIDDEN_THIRD_PARTY and FORBIDDEN_THIRD_PARTY[layer](parts[0]):
            bad.append(name)
        if layer == "models" and name.startswith("torch.distributed"):
            bad.append(name)
    assert not bad, f"{path.relative_to(SRC)} ({layer}) may not import {bad}"


def test_the_walker_sees_violations(tmp_path: Path) -> None:
    # A check that cannot fail is no check: feed it a known violation.
    fake = SRC / "models" / "_probe_violation.py"
    fake.write_text("from dlhpc.engine import loop\nimport torch.distributed\n")
    try:
        names = imports_of(fake)
        assert "dlhpc.engine" in names and "torch.distributed" in names
        with pytest.raises(AssertionError):
            test_imports_point_down(fake)
    finally:
        fake.unlink()
