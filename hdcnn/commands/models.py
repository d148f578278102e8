"""``python -m hdcnn models``: a weights folder's known answers
(:mod:`hdcnn.cascade.known_answers`).

- ``models stamp DIR``: run the SYNTHETIC reference inputs through the folder's cascade and write
  the outputs into its ``cascade.json`` (after training, shipping or calibrating);
- ``models check DIR``: load the folder as ``predict`` does and rerun its known answers.

Exit codes: 0 ok, 2 a folder that is refused (the error names the file, field or part).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hdcnn.utils import DEFAULT_WEIGHTS_DIR


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command to the CLI."""
    p = subparsers.add_parser(
        "models",
        help="write or check a weights folder's known answers",
        description="Known answers: the det-hier outputs (detector boxes and scores, C1/C2 "
        "probabilities, image verdict) on SYNTHETIC reference inputs, stored in cascade.json "
        "and checked whenever the folder is loaded.",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("stamp", "write the folder's current outputs as its known answers"),
        ("check", "load the folder and rerun its known answers"),
    ):
        q = sub.add_parser(name, help=text, description=text)
        q.add_argument(
            "weights",
            type=Path,
            nargs="?",
            default=Path(DEFAULT_WEIGHTS_DIR),
            help="weights folder",
        )
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hdcnn.cascade import load_cascade, stamp_known_answers

    t0 = time.perf_counter()
    if args.action == "stamp":
        config = stamp_known_answers(args.weights)
        assert config.known_answers is not None
        refs = config.known_answers.references
        for ref in refs:
            print(
                f"{ref.name}: {len(ref.boxes)} boxes (best score "
                f"{max(ref.scores, default=0.0):.4f}), verdict {ref.label} "
                f"(P(abnormal) {ref.p_abnormal:.4f}, P(malignant) {ref.p_malignant_image:.4f})"
                + ("" if ref.spots is None else f", {len(ref.spots.boxes)} calcification spots")
            )
        print(
            f"wrote the known answers of {len(refs)} SYNTHETIC reference inputs to {args.weights}"
        )
        return 0
    cascade = load_cascade(args.weights, known_answers="require")
    calc = ", calcification stream" if cascade.calc_stream is not None else ""
    print(
        f"{args.weights}: known answers agree (detector, C1, C2{calc}, verdict) "
        f"[{(time.perf_counter() - t0):.1f} s]"
    )
    return 0
