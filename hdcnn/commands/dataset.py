"""``python -m hdcnn dataset``: build manifests, statistics and preprocessed caches.

Subcommands::

    dataset stats    --dataset NAME --root DIR [--json OUT]
    dataset manifest --dataset NAME --root DIR --out manifest.csv
    dataset cache    --dataset NAME --root DIR --out CACHE [--long-side 1024] [--workers 2]

``NAME`` is one of :data:`hdcnn.data.adapters.ADAPTERS` (``mias``, ``cbis-ddsm``, ``vindr``,
``cmmd``, ``rsna``, ``inbreast``, ``folder``, ``synth``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hdcnn.data.adapters import ADAPTERS, load_dataset
from hdcnn.utils import atomic_write_text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dataset`` command and its subcommands to the CLI."""
    parser = subparsers.add_parser(
        "dataset",
        help="dataset manifests, statistics and preprocessed caches",
        description="Read a public mammography dataset as distributed and build its manifest, "
        "statistics or preprocessed cache.",
    )
    sub = parser.add_subparsers(dest="dataset_command", required=True, metavar="SUBCOMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--dataset", required=True, metavar="NAME", help=f"one of: {', '.join(ADAPTERS)}"
        )
        p.add_argument("--root", required=True, type=Path, metavar="DIR", help="dataset root")
        return p

    stats = add("stats", "print dataset statistics and optionally write them as JSON")
    stats.add_argument("--json", type=Path, metavar="OUT", help="write the statistics here")
    stats.set_defaults(func=run_stats)

    manifest = add("manifest", "write the dataset's manifest CSV")
    manifest.add_argument("--out", required=True, type=Path, help="manifest CSV to write")
    manifest.set_defaults(func=run_manifest)

    cache = add("cache", "preprocess every image into a 16-bit PNG cache (resumable)")
    cache.add_argument("--out", required=True, type=Path, metavar="CACHE", help="cache folder")
    cache.add_argument(
        "--long-side", type=_positive_int, default=1024, help="cached image long side (1024)"
    )
    cache.add_argument("--workers", type=_positive_int, default=2, help="worker processes (2)")
    cache.set_defaults(func=run_cache)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run_stats(args: argparse.Namespace) -> int:
    """Print the statistics of ``--dataset`` at ``--root``; write JSON to ``--json``."""
    from hdcnn.data.stats import dataset_stats, format_stats

    stats = dataset_stats(load_dataset(args.dataset, args.root))
    print(f"dataset       {args.dataset} ({args.root})")
    print(format_stats(stats))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(stats, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    """Write the manifest CSV of ``--dataset`` at ``--root`` to ``--out``."""
    manifest = load_dataset(args.dataset, args.root)
    manifest.save_csv(args.out)
    print(f"wrote {args.out}: {len(manifest)} images of {len(manifest.patients())} patients")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    """Build the preprocessed cache of ``--dataset`` at ``--root`` in ``--out``."""
    from hdcnn.data.cache import build_cache

    manifest = load_dataset(args.dataset, args.root)
    summary = build_cache(manifest, args.out, long_side=args.long_side, workers=args.workers)
    if isinstance(summary, dict):
        failed = summary.get("failed") or []
        for item in failed:
            print(f"failed: {item}")
        print(json.dumps({k: v for k, v in summary.items() if k != "failed"}, indent=2))
        print(f"{len(failed)} image(s) failed")
        return 1 if failed else 0
    print(summary)
    return 0
