"""The pieces every command's options share: the parser whose errors are one line, and the argument types that
check a value where it is given (an integer >= n, a number > 0, a device)."""

from __future__ import annotations

import argparse
import re

from ..config import DEVICE_PATTERN, config_to_dict
from ..config.coercion import INT_LIMIT, shown


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in one line (``vicreg: error: ...``), like every other error of the command."""

    def error(self, message: str):
        self.exit(2, f"vicreg: error: {one_line(message)} (see `{self.prog} --help`)\n")


def one_line(text: str) -> str:
    """``text`` with its line breaks and other unprintable characters escaped as Python writes them (``\\n``,
    ``\\x00``, ``\\u202e``): a message stays one line whatever a path or a value in it held."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def at_least(low: int, most: int = INT_LIMIT):
    """An argparse type: an integer >= low (and <= most: 2**63 - 1, as a config field, unless told)."""

    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{shown(text)} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is not valid: expected an integer >= {low}")
        if value > most:
            raise argparse.ArgumentTypeError(f"{shown(value)} is not valid: expected an integer in [{low}, "
                                             f"{'2**63 - 1' if most == INT_LIMIT else most}]")
        return value

    return integer


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value:g} is not valid: expected a finite number > 0")
    return value


def device(text: str) -> str:
    if re.fullmatch(DEVICE_PATTERN, text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid: expected auto, cpu, cuda, cuda:N (N a GPU index) "
                                         f"or mps")
    return text


def add_device(parser: argparse.ArgumentParser, what: str = "auto, cpu or cuda[:N]") -> None:
    """The --device option of a command."""
    parser.add_argument("--device", type=device, default="auto", help=f"{what} (default auto)")


def defaults(cfg) -> str:
    """'key=value, ...' of a config dataclass's fields: its defaults, for a command's description."""
    return ", ".join(f"{k}={v}" for k, v in config_to_dict(cfg).items())
