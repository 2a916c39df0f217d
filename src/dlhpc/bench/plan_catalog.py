"""The hardware catalog of ``dlhpc plan``: a TOML file of devices, each figure with its source.

    from dlhpc.bench.plan_catalog import load_catalog
    catalog = load_catalog()                 # the shipped bench/catalog.toml
    catalog = load_catalog(Path("my.toml"))  # a user's own, same format

Any problem (unreadable file, TOML syntax, unknown key, a figure without a source, a value out of
range) is one ``ConfigError`` line naming the file and the entry: ``dlhpc plan`` exits with 2.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from dlhpc.errors import ConfigError

FORMAT = 1
KINDS = ("cpu", "gpu")
# figure key → (multiplier to SI units, required)
FIGURES: dict[str, tuple[float, bool]] = {
    "fp32_tflops": (1e12, True),
    "bf16_tflops": (1e12, False),
    "memory_gb": (1e9, True),
    "memory_bandwidth_gb_s": (1e9, True),
    "network_gbit_s": (1e9 / 8, False),
    "network_latency_us": (1e-6, False),
    "op_overhead_us": (1e-6, False),
    "price_per_hour": (1.0, False),
}
TEXT_KEYS = {"name", "kind", "currency", "source"}
ASSUMPTION_KEYS = {"efficiency_min", "efficiency_max", "max_nodes", "source"}
Fail = Callable[[str], ConfigError]  # a message → the one-line error naming the catalog file


@dataclass(frozen=True)
class Device:
    """One device, in SI units (FLOP/s, bytes, bytes/s, seconds). One node = one device."""

    name: str
    kind: str  # cpu | gpu
    fp32_flops: float
    memory_bytes: float
    memory_bandwidth: float
    bf16_flops: float | None = None
    network_bandwidth: float | None = None  # bytes/s per node; None: a single node only
    network_latency: float = 0.0  # seconds per all-reduce message
    op_overhead: float = 0.0  # seconds per dispatched op: the floor of a tiny step
    price_per_hour: float | None = None  # per device-hour, in ``currency``
    currency: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    measured: bool = False  # this machine, measured by ``dlhpc plan`` itself


@dataclass(frozen=True)
class Assumptions:
    efficiency_min: float = 0.05
    efficiency_max: float = 0.6
    max_nodes: int = 4096
    source: str = "dlhpc defaults (the catalog has no [assumptions] table)"


@dataclass(frozen=True)
class Catalog:
    path: Path
    devices: tuple[Device, ...]
    assumptions: Assumptions


def shipped_catalog() -> Path:
    return Path(str(files("dlhpc.bench").joinpath("catalog.toml")))


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or shipped_catalog()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"catalog {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"catalog {path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"catalog {path}: not valid TOML ({e})") from None
    return parse_catalog(raw, path)


def parse_catalog(raw: dict[str, Any], path: Path) -> Catalog:
    def fail(msg: str) -> ConfigError:
        return ConfigError(f"catalog {path}: {msg}")

    unknown = set(raw) - {"format", "assumptions", "device"}
    if unknown:
        raise fail(
            f"unknown top-level key(s) {sorted(unknown)}; known: format, assumptions, device"
        )
    if raw.get("format", FORMAT) != FORMAT:
        raise fail(f"format {raw.get('format')!r} is not supported (expected {FORMAT})")
    entries = raw.get("device", [])
    if not isinstance(entries, list) or not entries:
        raise fail("needs at least one [[device]] table")
    devices = tuple(_device(e, i + 1, fail) for i, e in enumerate(entries))
    names = [d.name for d in devices]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise fail(f"device name(s) listed twice: {dupes}")
    return Catalog(path, devices, _assumptions(raw.get("assumptions", {}), fail))


def _device(e: Any, n: int, fail: Fail) -> Device:
    if not isinstance(e, dict):
        raise fail(f"device {n} is not a table")
    where = f"device {n} ({e.get('name', 'no name')!r})"
    unknown = set(e) - set(FIGURES) - TEXT_KEYS
    if unknown:
        known = ", ".join(sorted(set(FIGURES) | TEXT_KEYS))
        raise fail(f"{where}: unknown key(s) {sorted(unknown)}; known: {known}")
    for key in ("name", "kind"):
        if not isinstance(e.get(key), str) or not e[key]:
            raise fail(f'{where}: needs {key} = "…"')
    if e["kind"] not in KINDS:
        raise fail(f"{where}: kind must be one of {KINDS}, got {e['kind']!r}")
    values: dict[str, float] = {}
    for key, (scale, required) in FIGURES.items():
        v = e.get(key)
        if v is None:
            if required:
                raise fail(f"{where}: needs {key}")
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise fail(f"{where}: {key} must be a number, got {v!r}")
        if v < 0 or (v == 0 and key not in ("price_per_hour", "network_latency_us",
                                             "op_overhead_us")):  # fmt: skip
            raise fail(f"{where}: {key} must be positive, got {v!r}")
        values[key] = float(v) * scale
    sources = _sources(e.get("source"), set(values), where, fail)
    return Device(
        name=e["name"], kind=e["kind"], fp32_flops=values["fp32_tflops"],
        memory_bytes=values["memory_gb"], memory_bandwidth=values["memory_bandwidth_gb_s"],
        bf16_flops=values.get("bf16_tflops"), network_bandwidth=values.get("network_gbit_s"),
        network_latency=values.get("network_latency_us", 0.0),
        op_overhead=values.get("op_overhead_us", 0.0),
        price_per_hour=values.get("price_per_hour"), currency=str(e.get("currency", "")),
        sources=sources,
    )  # fmt: skip


def _sources(src: Any, figures: set[str], where: str, fail: Fail) -> dict[str, str]:
    """Every figure needs a source string; a source for a figure not given is a typo."""
    if not isinstance(src, dict):
        raise fail(f"{where}: needs a [device.source] table with one string per figure")
    missing = sorted(figures - set(src))
    if missing:
        raise fail(f"{where}: no source for {missing} (a datasheet, 'derived: …' or "
                   "'assumption: …')")  # fmt: skip
    extra = sorted(set(src) - figures)
    if extra:
        raise fail(f"{where}: source for figure(s) not given: {extra}")
    bad = [k for k, v in src.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise fail(f"{where}: source for {bad} must be a non-empty string")
    return {k: str(v) for k, v in src.items()}


def _assumptions(a: Any, fail: Fail) -> Assumptions:
    if not isinstance(a, dict):
        raise fail("[assumptions] must be a table")
    unknown = set(a) - ASSUMPTION_KEYS
    if unknown:
        raise fail(f"[assumptions]: unknown key(s) {sorted(unknown)}; "
                   f"known: {', '.join(sorted(ASSUMPTION_KEYS))}")  # fmt: skip
    d = Assumptions()
    lo, hi = a.get("efficiency_min", d.efficiency_min), a.get("efficiency_max", d.efficiency_max)
    nodes = a.get("max_nodes", d.max_nodes)
    numbers = (lo, hi)
    if any(isinstance(x, bool) or not isinstance(x, int | float) for x in numbers):
        raise fail("[assumptions]: efficiency_min and efficiency_max must be numbers")
    if not 0 < lo <= hi <= 1:
        raise fail(f"[assumptions]: need 0 < efficiency_min ≤ efficiency_max ≤ 1, got {lo}, {hi}")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise fail(f"[assumptions]: max_nodes must be a positive integer, got {nodes!r}")
    source = a.get("source", d.source)
    if not isinstance(source, str):
        raise fail("[assumptions]: source must be a string")
    return Assumptions(float(lo), float(hi), nodes, source)


def datasheet_for(device_name: str, catalog: Catalog | None = None) -> Device | None:
    """The catalog's GPU that ``device_name`` (as the driver names it, e.g. "NVIDIA H200")
    is, ignoring the form factor word; None when the catalog does not know it."""
    name = device_name.lower().replace("-", " ").split()
    for d in (catalog or load_catalog()).devices:
        words = d.name.lower().split()
        if "pcie" in name and "pcie" not in words:  # another part, with other figures
            continue
        if d.kind == "gpu" and all(w in name for w in words if w not in ("sxm", "pcie")):
            return d
    return None
