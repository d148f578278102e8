"""Command-line entry point: ``python -m hdcnn COMMAND ...``.

Each command lives in its own module under :mod:`hdcnn.commands` and exposes
``register(subparsers)`` which adds its parser and sets ``func`` (``args -> exit code``).
The CLI is a thin client of the library: parsing arguments, printing, exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: command name -> module in hdcnn.commands
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "dataset": "dataset",
    "train": "train",
    "predict": "predict",
    "evaluate": "evaluate",
    "cv": "cv",
    "compare": "compare",
    "pacs": "pacs",
    "calibrate": "calibrate",
    "models": "models",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hdcnn",
        description="HD-CNN Mammo: hierarchical lesion detection and grading in mammograms "
        "(research demo, not a medical device).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS.values():
        module = importlib.import_module(f"hdcnn.commands.{module_name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from hdcnn.errors import HDCNNError

    try:
        return int(args.func(args) or 0)
    except HDCNNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
