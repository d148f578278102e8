"""``python -m hdcnn synth``: write a SYNTHETIC screening cohort (no real patients)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` command to the CLI."""
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic mammogram cohort (DICOM + manifest.csv) for testing",
        description="Write a SYNTHETIC screening cohort: four 16-bit DICOM views per patient "
        "(about 50%% normal, 25%% benign, 25%% malignant), manifest.csv with labels and lesion "
        "boxes in original pixels, and a README. Not real patients; for exercising the software.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--patients", type=int, default=25, help="number of patients (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument("--png", action="store_true", help="also write 16-bit PNG copies")
    parser.add_argument(
        "--size", type=int, default=512, help="image height in pixels (default 512; width 13/16)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the cohort; returns the exit code."""
    from tqdm import tqdm

    from hdcnn.data.synth import write_cohort

    if args.patients < 1:
        print("error: --patients must be at least 1", file=sys.stderr)
        return 2
    if args.size < 64:
        print("error: --size must be at least 64", file=sys.stderr)
        return 2
    with tqdm(total=args.patients, unit="patient", desc="synth", disable=None) as bar:
        manifest = write_cohort(
            args.out,
            patients=args.patients,
            seed=args.seed,
            size=args.size,
            png=args.png,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    counts: dict[str, int] = {}
    for record in manifest.records:
        counts[str(record.label)] = counts.get(str(record.label), 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(
        f"wrote {len(manifest.records)} SYNTHETIC images of {args.patients} patients "
        f"to {args.out} (images: {summary}); manifest: {args.out / 'manifest.csv'}"
    )
    return 0
