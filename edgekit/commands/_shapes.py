"""Argument helpers shared by the converter subcommands."""

from __future__ import annotations

import argparse


def whole_number(low: int, high: int):
    """An argparse type: a whole number in [low, high], refused with the range in the message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def parse_share(text: str) -> float:
    """A share written as 50% or 0.5 -> 0.5 (ValueError when it is no number)."""
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def share(text: str) -> float:
    """An argparse type: a share given as 50% or 0.5 (its range is the library's to check)."""
    try:
        return parse_share(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a share: write 50% or 0.5") from None


SAMPLES = whole_number(1, 100_000)  # verification samples: each is one inference on both runtimes
PORT = whole_number(0, 65_535)  # 0: any free port


def add_input_shape(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME=D1,D2,...",
        help="fix an input's shape, e.g. --input-shape input=1,3,224,224 (repeatable)",
    )
