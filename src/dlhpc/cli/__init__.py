"""``dlhpc``: parse → config → call one function. Run ``dlhpc --help``.

One module per group of commands; each exposes ``COMMANDS``, functions that add a sub-parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Environment the CLI sets before anything loads torch (and with it OpenMP), unless the user has.
# GOMP_SPINCOUNT: how long an idle OpenMP thread spins before it sleeps. libgomp's default
# (300,000) lets a waiting thread hold a core that a busy neighbour needs; 10,000 trained the CNN
# 1.1× faster on a quiet 2-core machine and 1.2–1.4× faster beside a busy process
# (benchmarks/omp_spin_cpu_20261128.md). ``DLHPC_DEFAULTED`` names what was set, so benchmarks
# run their peers without it.
CLI_ENV = {"GOMP_SPINCOUNT": "10000"}
_defaulted = [k for k in CLI_ENV if k not in os.environ]
os.environ.update({k: CLI_ENV[k] for k in _defaulted})
if _defaulted:
    os.environ["DLHPC_DEFAULTED"] = ",".join(_defaulted)

from dlhpc.engine.allocator import tune_host_allocator  # noqa: E402

# Before torch allocates anything: freed tensors stay with the process for the next step
# (engine/allocator.py: 1.40-1.57× the CNN's training step on one and two threads).
tune_host_allocator()

from dlhpc import __version__  # noqa: E402  (after the environment above)
from dlhpc.cli import bench, optimize, plan, reference, serve, train  # noqa: E402
from dlhpc.cli.common import Parser  # noqa: E402
from dlhpc.errors import DlhpcError  # noqa: E402

GROUPS = (train, reference, serve, bench, optimize, plan)


def build_parser() -> Parser:
    p = Parser(prog="dlhpc", description="Train and serve the classic deep-learning models "
               "at the speed of the hardware.")  # fmt: skip
    p.add_argument("--version", action="version", version=f"dlhpc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for group in GROUPS:
        for add in group.COMMANDS:
            add(sub)
    return p


def _start_helpers(argv: list[str]) -> None:
    """``dlhpc train`` in a fresh process, on the rank that writes the report: start the report's
    figure helper now, so that it imports matplotlib on the core that importing torch (next,
    ≈ 2 s on one core) leaves idle. Not under ``--nproc`` (the launcher trains nothing itself),
    nor where torch is loaded already (the overlap is the whole point)."""
    if argv[:1] != ["train"] or "torch" in sys.modules or {"-h", "--help"} & set(argv):
        return
    if os.environ.get("RANK", "0") != "0" or os.environ.get("SLURM_PROCID", "0") != "0":
        return
    # the two options that send `train` through the launcher, read as `dlhpc train` reads them
    launch = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    launch.add_argument("--nproc", type=int, default=1)
    launch.add_argument("--max-restarts", type=int, default=0)
    try:
        a, _ = launch.parse_known_args(argv[1:])
    except (argparse.ArgumentError, SystemExit):  # malformed: the real parser will say so
        return
    if a.nproc > 1 or a.max_restarts > 0:
        return
    from dlhpc.engine import plots

    plots.prestart()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _start_helpers(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    # as the parser names the command in its own errors: "dlhpc bench scale", "dlhpc train"
    prog = " ".join(["dlhpc", args.command, *([args.bench] if args.command == "bench" else [])])
    try:
        code: int = args.func(args)
    except DlhpcError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dlhpc … | head`: the reader left; that is not an error
        sys.stderr.close()
        return 0
    except OSError as e:  # a path the user gave that cannot be made or written: say which
        print(f"{prog}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    return code


def os_error_line(e: OSError) -> str:
    """``[Errno 20] Not a directory: 'a/b'`` as ``a/b: not a directory``."""
    what = (e.strerror or str(e)).rstrip(".")
    what = what[:1].lower() + what[1:]
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    if isinstance(e, FileExistsError) and names and not Path(names[0]).is_dir():
        what = "exists and is not a directory"  # mkdir on a file's path
    return f"{' -> '.join(names)}: {what}" if names else what
