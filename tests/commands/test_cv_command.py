"""The cv command's Markdown tables (hdcnn.commands.cv.markdown), quoted by the README and the
model card."""

from __future__ import annotations

import pytest
import torch

from hdcnn.cli import main
from hdcnn.commands.cv import markdown


def _report(**blocks: object) -> dict:
    """A cv report with no concepts and the given blocks (``ablations``, ``lesion_types``)."""
    return {
        "n_images": 2,
        "n_patients": 1,
        "n_lesions": 1,
        "protocol": {"folds": 2},
        "concepts": {},
        **blocks,
    }


def test_ablation_rows_show_the_paired_difference_to_the_reference() -> None:
    report = _report(
        ablations={
            "rows": {
                "reference": {
                    "what": "frozen ImageNet features",
                    "auc_abnormal": 0.7289,
                    "auc_malignant": 0.7604,
                    "froc_1": 0.593,
                    "froc_1_by_kind": {"calcification": 0.0625, "mass": 0.6591},
                },
                "random-init": {
                    "what": "untrained trunk",
                    "auc_abnormal": 0.655,
                    "auc_malignant": 0.654,
                    "froc_1": 0.5,
                    "minus_reference": {
                        "auc_abnormal": [-0.0739, -0.1302, -0.0151],
                        "auc_malignant": None,
                    },
                },
            }
        }
    )
    table = markdown(report).splitlines()
    # one FROC column per lesion type found in any row; a row without it shows a dash
    assert any(line.endswith("| FROC @1 FP, calcification | FROC @1 FP, mass |") for line in table)
    assert "| reference | frozen ImageNet features | 0.729 | 0.760 | 0.59 | 0.06 | 0.66 |" in table
    assert (
        "| random-init | untrained trunk | 0.655 (-0.074 [-0.130, -0.015]) | 0.654 | 0.50 | — | — |"
        in table
    )


def test_lesion_type_rows_show_the_image_auc_against_normal(calcification_row) -> None:
    report = _report(lesion_types={"calcification": calcification_row})
    # a report written before the FROC on merged findings shows a dash there
    assert (
        "| calcification | 16 | 0.38 | 0.00 / 0.06 / 0.12 | — | 13 | 0.551 [0.41–0.69] |"
        in markdown(report).splitlines()
    )
    merged = {"0.5": 0.125, "1": 0.125, "2": 0.375, "mean": 0.208}
    report = _report(lesion_types={"calcification": {**calcification_row, "froc_findings": merged}})
    assert (
        "| calcification | 16 | 0.38 | 0.00 / 0.06 / 0.12 | 0.12 / 0.12 / 0.38 | 13 "
        "| 0.551 [0.41–0.69] |" in markdown(report).splitlines()
    )


def test_device_option_names_what_is_wrong(monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, problem in (
        ("cuda", "CUDA is not available on this machine"),
        ("gpu", "is not a torch device"),
        ("meta", "use cpu or cuda[:N]"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["cv", "--root", "x", "--device", device])
        assert exc.value.code == 2 and problem in capsys.readouterr().err


def test_long_side_option_names_what_is_wrong(capsys) -> None:
    for text, problem in (("big", "is not a whole number of pixels"), ("32", "use 64 to 4096")):
        with pytest.raises(SystemExit) as exc:
            main(["cv", "--root", "x", "--long-side", text])
        assert exc.value.code == 2 and problem in capsys.readouterr().err


def test_detector_anchors_keep_their_size_in_millimetres() -> None:
    from dataclasses import replace

    from hdcnn.nets.detector import DetectorConfig
    from hdcnn.train.detector import detector_config
    from hdcnn.train.recipe import CVConfig

    base = CVConfig()
    assert detector_config(base).anchor_sizes == DetectorConfig.anchor_sizes
    double = replace(base, cascade=replace(base.cascade, long_side=2 * base.cascade.long_side))
    got = detector_config(double)
    assert got.long_side == 1024
    assert got.anchor_sizes == tuple(2 * s for s in DetectorConfig.anchor_sizes)
