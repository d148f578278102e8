"""Test helpers: the field's own DICOM tools (skipped with a reason where missing) and
reading SR regions back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

from hdcnn.dicomout.common import box_of


def dciodvfy_errors(path: Path) -> list[str]:
    """``dciodvfy``'s error lines for a file (Debian ``dicom3tools``); skips without it."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def dsrdump(path: Path) -> str:
    """``dsrdump``'s text of an SR (Debian ``dcmtk``); skips without it."""
    if shutil.which("dsrdump") is None:
        pytest.skip("dsrdump not installed (Debian package dcmtk)")
    run = subprocess.run(["dsrdump", str(path)], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode("utf-8", "replace")
    return run.stdout.decode("utf-8", "replace")  # the tree's text, in the file's charset


def sr_regions(path_or_ds: object) -> dict[str, tuple[str, tuple[float, float, float, float]]]:
    """``{tracking identifier: (referenced SOP Instance UID, box)}`` of an SR's planar ROI
    groups, read back with highdicom."""
    sr = hd.sr.srread(path_or_ds) if isinstance(path_or_ds, (str, Path)) else path_or_ds
    if not isinstance(sr, hd.sr.ComprehensiveSR):
        sr = hd.sr.ComprehensiveSR.from_dataset(sr)
    out = {}
    for group in sr.content.get_planar_roi_measurement_groups():
        region = group.roi
        points = np.asarray(region.value, dtype=np.float64)
        uid = region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        out[group.tracking_identifier] = (str(uid), box_of(points))
    return out
