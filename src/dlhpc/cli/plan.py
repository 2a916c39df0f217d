"""``dlhpc plan``: what a model and data set need, and what to run them on.

dlhpc plan cnn --data digits                          # measure here, project onto the catalog
dlhpc plan cnn --data digits --epochs 30 --target-hours 0.5
dlhpc plan lstm --data reviews/ --catalog my.toml --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dlhpc.cli.common import add_output_flags, positive_float, positive_int


def add_plan(sub: Any) -> None:
    from dlhpc.models import model_names

    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("plan", help="FLOPs, memory and time of a run across a hardware catalog",
                       description=__doc__, formatter_class=raw)  # fmt: skip
    p.add_argument("model", choices=model_names(), help="architecture")
    p.add_argument("--data", required=True, metavar="SRC", help="data source (as for train)")
    p.add_argument("--epochs", type=positive_int, default=15, help="epochs to finish (15)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="global batch size (128)")
    p.add_argument("--target-hours", type=positive_float, metavar="H",
                   help="nodes needed to finish within H hours, per device")  # fmt: skip
    p.add_argument("--catalog", type=Path, metavar="FILE",
                   help="hardware catalog TOML (the shipped bench/catalog.toml)")  # fmt: skip
    p.add_argument("--steps", type=positive_int, default=30, help="timed calibration steps (30)")
    add_output_flags(p)
    p.set_defaults(func=_cmd_plan)


def _cmd_plan(a: argparse.Namespace) -> int:
    from dlhpc.bench.plan import run_plan
    from dlhpc.bench.plan_catalog import load_catalog
    from dlhpc.bench.plan_render import render_plan
    from dlhpc.data import DataConfig
    from dlhpc.models import ModelConfig

    catalog = load_catalog(a.catalog)  # a bad catalog fails before any measuring
    say = None if a.quiet else print
    plan = run_plan(DataConfig(a.data), ModelConfig(a.model), epochs=a.epochs,
                    batch_size=a.batch_size, target_hours=a.target_hours, catalog=catalog,
                    steps=a.steps, say=say)  # fmt: skip
    if not a.quiet:
        render_plan(plan)
    if a.json:
        print(json.dumps(plan))
    return 0


COMMANDS = (add_plan,)
