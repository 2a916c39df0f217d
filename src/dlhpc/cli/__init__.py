"""``dlhpc``: parse → config → call one function. Run ``dlhpc --help``.

One module per group of commands; each exposes ``COMMANDS``, functions that add a sub-parser.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlhpc import __version__
from dlhpc.cli import bench, optimize, plan, reference, serve, train
from dlhpc.cli.common import Parser
from dlhpc.errors import DlhpcError

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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        code: int = args.func(args)
    except DlhpcError as e:
        print(f"dlhpc {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"dlhpc {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dlhpc … | head`: the reader left; that is not an error
        sys.stderr.close()
        return 0
    return code
