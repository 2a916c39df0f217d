"""What every command shares: the one-line error parser, output flags, result printing."""

from __future__ import annotations

import argparse
import math
from typing import Any, NoReturn

from dlhpc.fsio import json_line

S = argparse.SUPPRESS  # flags left unset stay unset (a resumed run keeps its own settings)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as every bad input gets: what is wrong and where to look.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _number(kind: type[int] | type[float], text: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(_number(int, text))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    value = int(_number(int, text))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    value = float(_number(float, text))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in (0, 1] (an accuracy target, say)."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, got {text}")
    return value


def positive_int_list(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated integers of at least 1 (layer widths, say)."""
    values = int_list(text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected widths of at least 1, got {text!r}")
    return values


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--quiet", action="store_true", help="no progress bar or tables")


def emit(a: argparse.Namespace, result: dict[str, Any], headline: str) -> None:
    """Print a result: a table for people, one JSON line with --json (always last)."""
    if not a.quiet:
        print(headline)
        for k, v in result.items():
            if not isinstance(v, dict | list):
                print(f"  {k:<20} {_fmt(v)}")
    if a.json:
        print(json_line(result))


def _fmt(v: object) -> str:
    if isinstance(v, float) and v != 0 and abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.4f}" if isinstance(v, float) else str(v)
