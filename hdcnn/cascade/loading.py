"""Loading a cascade from a weights folder (hash-checked, settings checked against the checkpoints).

Part of :mod:`hdcnn.cascade` (see its docstring for the rules).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hdcnn.calibration import Calibration
from hdcnn.config import CascadeConfig
from hdcnn.errors import CheckpointError
from hdcnn.roi import DEFAULT_CONTEXT

if TYPE_CHECKING:
    pass

from hdcnn.cascade.heads import (
    CROP_SOURCES,
    CropHead,
    FlatCropHead,
    HierarchicalCropHead,
    _class_index,
    _input_size,
)
from hdcnn.cascade.orchestrator import DEFAULT_LONG_SIDE, DEFAULT_MAX_CANDIDATES, Cascade
from hdcnn.cascade.rules import Thresholds

log = logging.getLogger(__name__)

DETECTOR_FILE = "detector.pt"
C1_FILE = "c1_lesion.pt"
C2_FILE = "c2_malignancy.pt"
CROP_FLAT_FILE = "crop_flat.pt"
CONFIG_FILE = "cascade.json"

# ----------------------------------------------------------------------------- loading


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_cascade_config(weights_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``cascade.json`` of a weights directory as a dict (``{}`` when absent).

    Raises:
        CheckpointError: the folder does not exist or the file is not a JSON object.
    """
    root = Path(weights_dir)
    if not root.is_dir():
        raise CheckpointError(str(root), "weights directory not found")
    path = root / CONFIG_FILE
    if not path.is_file():
        log.warning("%s: no %s, using default thresholds", root, CONFIG_FILE)
        return {}
    # CascadeConfig is the one reader: it checks the types and fills the documented defaults
    return CascadeConfig.load(root).to_json()


def load_model_file(
    weights_dir: str | os.PathLike[str], file_name: str, config: Mapping[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any], str]:
    """Load one weights file of a weights directory, checking its sha256 against cascade.json.

    Returns:
        ``(model in eval mode, checkpoint dict, sha256 hex)``; EfficientNet-Lite0 trunks inside
        it are fused for inference (BatchNorm folded into the convolutions; it cannot be trained).

    A file that ``cascade.json`` lists no sha256 for is loaded with a warning naming it (its
    integrity is not checked); weights holding NaN or infinite values are refused.

    Raises:
        CheckpointError: the file is missing, corrupt, holds non-finite weights, or its
            sha256 differs from ``cascade.json["files"]``.
    """
    from hdcnn.checkpoint import build_from_checkpoint, load_checkpoint
    from hdcnn.nets.efficientnet import fuse_trunks_for_inference

    path = Path(weights_dir) / file_name
    if not path.is_file():
        raise CheckpointError(str(path), "weights file not found")
    digest = sha256_file(path)
    expected = ((config or {}).get("files") or {}).get(file_name)
    if expected and str(expected).lower() != digest:
        raise CheckpointError(str(path), "sha256 differs from cascade.json: file changed?")
    if not expected:
        log.warning(
            "%s: cascade.json lists no sha256 for this file: its integrity is NOT checked",
            path,
        )
    ckpt = load_checkpoint(path)
    for key, value in (ckpt.get("model") or {}).items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(str(path), f"weights hold NaN or infinite values ({key})")
    model = fuse_trunks_for_inference(build_from_checkpoint(ckpt).eval())
    return model, ckpt, digest


def _crop_source(config: Mapping[str, Any], root: Path) -> str:
    source = str((config.get("roi") or {}).get("crop_source", "model"))
    if source not in CROP_SOURCES:
        raise CheckpointError(
            str(root / CONFIG_FILE),
            f"roi.crop_source must be one of {CROP_SOURCES}, got {source!r}",
        )
    return source


def load_cascade(
    weights_dir: str | os.PathLike[str] = "models", *, crop_head: str = "hier"
) -> Cascade:
    """Load a cascade from a weights directory (layout of docs/ARCHITECTURE.md).

    Args:
        weights_dir: folder with ``detector.pt``, ``c1_lesion.pt``, ``c2_malignancy.pt``
            (``crop_flat.pt`` for ``crop_head="flat"``) and ``cascade.json``.
        crop_head: ``"hier"`` (C1 + C2: det-hier, the product) or ``"flat"`` (det-flat concept).

    Returns:
        A ready :class:`Cascade` (eval mode, thresholds and, for ``"hier"``, the probability
        calibration from ``cascade.json``). Also sets the
        process's allocator to reuse freed network buffers
        (:func:`hdcnn.runtime.reuse_freed_memory`).

    Raises:
        CheckpointError: a file is missing, corrupt, or does not fit.
    """
    from hdcnn.runtime import reuse_freed_memory

    reuse_freed_memory()
    root = Path(weights_dir)
    config = read_cascade_config(root)
    detector, det_ckpt, det_sha = load_model_file(root, DETECTOR_FILE, config)
    files = {DETECTOR_FILE: det_sha}
    if crop_head == "hier":
        c1, c1_ckpt, c1_sha = load_model_file(root, C1_FILE, config)
        c2, c2_ckpt, c2_sha = load_model_file(root, C2_FILE, config)
        size = _input_size(c1_ckpt, root / C1_FILE)
        if _input_size(c2_ckpt, root / C2_FILE) != size:
            raise CheckpointError(str(root / C2_FILE), "input_size differs from c1_lesion.pt")
        head: CropHead = HierarchicalCropHead(
            c1,
            c2,
            _class_index(c1_ckpt, "lesion", root / C1_FILE),
            _class_index(c2_ckpt, "malignant", root / C2_FILE),
            size[0],
            {C1_FILE: c1_sha, C2_FILE: c2_sha},
            crop_source=_crop_source(config, root),
        )
        thresholds_json = config.get("thresholds") or {}
    elif crop_head == "flat":
        model, ckpt, sha = load_model_file(root, CROP_FLAT_FILE, config)
        path = root / CROP_FLAT_FILE
        indices = tuple(_class_index(ckpt, c, path) for c in ("normal", "benign", "malignant"))
        head = FlatCropHead(
            model,
            indices,
            _input_size(ckpt, path)[0],
            {CROP_FLAT_FILE: sha},
            crop_source=_crop_source(config, root),
        )
        thresholds_json = (
            (config.get("concept_thresholds") or {}).get("det-flat")
            or config.get("thresholds")
            or {}
        )
    else:
        raise ValueError(f"crop_head must be 'hier' or 'flat', got {crop_head!r}")
    files.update(head.files)
    try:
        thresholds = Thresholds.from_dict(thresholds_json)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(str(root / CONFIG_FILE), f"bad thresholds ({exc})") from exc
    roi = config.get("roi") or {}
    crop_size = int(roi.get("crop_size", head.crop_size))
    if crop_size != head.crop_size:
        raise CheckpointError(
            str(root / CONFIG_FILE),
            f"roi.crop_size {crop_size} differs from the classifier input {head.crop_size}",
        )
    det_cfg = det_ckpt.get("config") or {}
    det_long_side = det_cfg.get("long_side", DEFAULT_LONG_SIDE)
    long_side = int((config.get("preprocess") or {}).get("long_side", det_long_side))
    if "long_side" in det_cfg and int(det_cfg["long_side"]) != long_side:
        raise CheckpointError(
            str(root / CONFIG_FILE),
            f"preprocess.long_side {long_side} differs from the detector's long_side "
            f"{int(det_cfg['long_side'])} in {DETECTOR_FILE}",
        )
    calibration = None
    if crop_head == "hier" and config.get("calibration") is not None:
        # fitted on det-hier's out-of-fold scores: the det-flat head has none
        calibration = Calibration.from_json(config["calibration"], str(root / CONFIG_FILE))
    return Cascade(
        detector,
        head,
        thresholds=thresholds,
        calibration=calibration,
        long_side=long_side,
        context=float(roi.get("context", DEFAULT_CONTEXT)),
        max_candidates=int(config.get("max_candidates", DEFAULT_MAX_CANDIDATES)),
        name=str(config.get("name") or root.resolve().name),
        files=files,
    )
