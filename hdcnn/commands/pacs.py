"""``python -m hdcnn pacs``: analyse a study held by a PACS and store the results back.

Fetches the study's mammograms over DICOMweb, analyses them as one exam, and stores a
structured report (TID 1500) and one presentation state per image into the same study
(:mod:`hdcnn.dicomout.pacs`). Nothing is stored when any step before the store fails.
"""

from __future__ import annotations

import argparse

from hdcnn.commands.predict import add_weights_argument
from hdcnn.report import SHORT_DISCLAIMER


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pacs`` command to the CLI."""
    parser = subparsers.add_parser(
        "pacs",
        help="analyse a study on a DICOMweb PACS and store the report and marks back",
        description="Fetch a study's mammograms from a DICOMweb server (e.g. Orthanc with its "
        "DICOMweb plugin), analyse them as one exam, and store a DICOM structured report and "
        "presentation states back into the study, with the study's patient identity. "
        + SHORT_DISCLAIMER,
    )
    parser.add_argument(
        "--url",
        required=True,
        help="the server: http://host:port (Orthanc: its /dicom-web root is used) or a "
        "DICOMweb root URL",
    )
    parser.add_argument("--study", required=True, metavar="UID", help="StudyInstanceUID")
    add_weights_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the cascade, run the round trip, print what was found and stored."""
    from hdcnn.cascade import load_cascade
    from hdcnn.dicomout.pacs import round_trip

    result = round_trip(
        args.url, args.study, lambda: load_cascade(args.weights, known_answers="require")
    )
    for n, image in enumerate(result.images, 1):
        p = image.prediction
        side = f"{image.laterality or '?'} {image.view or '?'}"
        print(
            f"image {n} ({side}): {p.label} (p_abn {p.p_abnormal:.3f}, p_mal "
            f"{p.p_malignant:.3f}), {len(p.kept_findings)} kept finding(s)"
        )
    exam = result.exam
    print(f"exam: {exam.label} (p_abn {exam.p_abnormal:.3f}, p_mal {exam.p_malignant:.3f})")
    print(
        f"stored {len(result.outputs.reports)} report(s) and "
        f"{len(result.outputs.presentation_states)} presentation state(s) in study "
        f"{args.study}. {SHORT_DISCLAIMER}"
    )
    return 0
