"""Argument helpers shared by the converter subcommands."""

from __future__ import annotations

import argparse


def add_input_shape(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME=D1,D2,...",
        help="fix an input's shape, e.g. --input-shape input=1,3,224,224 (repeatable)",
    )
