"""Loading a cascade from a weights folder: settings read and checked by
:class:`~hdcnn.config.CascadeConfig`, every checkpoint hash-checked and checked against the
file table (:data:`~hdcnn.config.WEIGHT_FILES`) before a network is built, and the folder's
known answers rerun (:mod:`hdcnn.cascade.known_answers`).

Part of :mod:`hdcnn.cascade` (see its docstring for the rules).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hdcnn.cascade import known_answers as answers
from hdcnn.cascade.calc import CalcStream
from hdcnn.cascade.heads import (
    CropHead,
    FlatCropHead,
    HierarchicalCropHead,
    _class_index,
    _input_size,
)
from hdcnn.cascade.orchestrator import Cascade
from hdcnn.config import CONFIG_FILE, WEIGHT_FILES, CascadeConfig, sha256_file, weight_spec
from hdcnn.errors import CheckpointError
from hdcnn.nets.features import FeatureClassifier
from hdcnn.spots import SPECK_FEATURES
from hdcnn.terms import Part

log = logging.getLogger(__name__)

#: How :func:`load_cascade` treats a folder's known answers.
KNOWN_ANSWER_MODES = ("check", "require", "skip")
#: Largest number a checkpoint's network config may hold (sizes, counts): anything larger is a
#: broken or hostile file, refused before a network is built (and memory allocated).
MAX_CONFIG_NUMBER = 100_000
#: Largest classifier input side accepted from a checkpoint (pixels).
MAX_INPUT_SIDE = 4096


def _check_checkpoint(ckpt: Mapping[str, Any], part: Part, path: Path) -> None:
    """Refuse a checkpoint that is not the table's ``part`` -- before any network is built.

    Raises:
        CheckpointError: other classes than the table's, a ``num_classes`` that differs from
            them, another part recorded in ``extra["part"]``, or an absurd input size.
    """
    expected = weight_spec(part).classes
    classes = ckpt.get("classes")
    if not isinstance(classes, list | tuple) or sorted(map(str, classes)) != sorted(expected):
        shown = f"{len(classes)} classes" if isinstance(classes, list | tuple) else "no class list"
        raise CheckpointError(str(path), f"expected the classes {list(expected)}, found {shown}")
    recorded = (ckpt.get("extra") or {}).get("part")
    if recorded is not None and str(recorded) != part:
        raise CheckpointError(
            str(path), f"holds the part {str(recorded)[:40]!r}, expected {part!r}"
        )
    config = ckpt.get("config")
    if not isinstance(config, Mapping):
        raise CheckpointError(str(path), "checkpoint config is not a dict")
    for key, value in config.items():
        values = value if isinstance(value, list | tuple) else [value]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if any(not math.isfinite(v) or abs(v) > MAX_CONFIG_NUMBER for v in numbers):
            raise CheckpointError(
                str(path), f"config {str(key)[:40]} holds a number beyond {MAX_CONFIG_NUMBER:g}"
            )
    if part == Part.DETECTOR:
        return
    n = config.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or n != len(expected):
        raise CheckpointError(
            str(path), f"config num_classes must be {len(expected)}, got {str(n)[:40]}"
        )
    size = config.get("input_size")
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and 8 <= v <= MAX_INPUT_SIDE for v in size)
    ):
        raise CheckpointError(
            str(path), f"config input_size must be two sides in [8, {MAX_INPUT_SIDE}]"
        )


def load_model_file(
    weights_dir: str | os.PathLike[str], part: Part | str, config: CascadeConfig
) -> tuple[nn.Module, dict[str, Any], str]:
    """Load one part's weights file of a weights folder, checking its sha256 against
    ``config.files`` and its classes and config against the file table.

    Returns:
        ``(model in eval mode, checkpoint dict, sha256 hex)``; EfficientNet-Lite0 trunks inside
        it are fused for inference (BatchNorm folded into the convolutions; it cannot be trained).

    A file that ``config.files`` lists no sha256 for is loaded with a warning naming it (its
    integrity is not checked); weights holding NaN or infinite values are refused.

    Raises:
        CheckpointError: the file is missing, corrupt, not the part the table names, holds
            non-finite weights, or its sha256 differs from ``config.files``.
    """
    from hdcnn.checkpoint import build_from_checkpoint, load_checkpoint
    from hdcnn.nets.efficientnet import fuse_trunks_for_inference

    part = Part(part)
    file_name = weight_spec(part).file
    path = Path(weights_dir) / file_name
    if not path.is_file():
        raise CheckpointError(str(path), "weights file not found")
    digest = sha256_file(path)
    expected = config.files.get(file_name)
    if expected and expected != digest:
        raise CheckpointError(str(path), f"sha256 differs from {CONFIG_FILE}: file changed?")
    if not expected:
        log.warning(
            "%s: %s lists no sha256 for this file: its integrity is NOT checked", path, CONFIG_FILE
        )
    ckpt = load_checkpoint(path)
    _check_checkpoint(ckpt, part, path)
    for key, value in (ckpt.get("model") or {}).items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(str(path), f"weights hold NaN or infinite values ({key})")
    model = fuse_trunks_for_inference(build_from_checkpoint(ckpt).eval())
    return model, ckpt, digest


def load_pair(
    root: Path, parts: tuple[Part, Part], config: CascadeConfig
) -> tuple[
    tuple[nn.Module, nn.Module],
    tuple[dict[str, Any], dict[str, Any]],
    tuple[str, str],
    tuple[Path, Path],
    tuple[int, ...],
]:
    """The two stages of a hierarchy (C1 and C2, or the two whole-image models), each loaded by
    :func:`load_model_file`, which must share one input size.

    Returns:
        ``(models, checkpoints, sha256s, paths, input size)``, each pair in ``parts`` order.

    Raises:
        CheckpointError: as :func:`load_model_file`, or the two input sizes differ.
    """
    first, second = (load_model_file(root, part, config) for part in parts)
    paths = (root / WEIGHT_FILES[parts[0]].file, root / WEIGHT_FILES[parts[1]].file)
    size = _input_size(first[1], paths[0])
    if _input_size(second[1], paths[1]) != size:
        raise CheckpointError(str(paths[1]), f"input_size differs from {paths[0].name}")
    return (first[0], second[0]), (first[1], second[1]), (first[2], second[2]), paths, size


def flat_head(root: Path, config: CascadeConfig) -> FlatCropHead:
    """The det-flat crop head (``crop_flat.pt``), cropping where ``config`` says."""
    model, ckpt, sha = load_model_file(root, Part.CROP_FLAT, config)
    path = root / WEIGHT_FILES[Part.CROP_FLAT].file
    indices = tuple(_class_index(ckpt, c, path) for c in WEIGHT_FILES[Part.CROP_FLAT].classes)
    return FlatCropHead(
        model,
        (indices[0], indices[1], indices[2]),
        _input_size(ckpt, path)[0],
        {path.name: sha},
        crop_source=config.crop_source,
    )


def load_calc_stream(root: Path, config: CascadeConfig) -> CalcStream | None:
    """The folder's calcification stream (None when ``cascade.json`` has no ``calc_stream``).

    Raises:
        CheckpointError: ``c1_calc.pt`` is missing, corrupt or not the stream's classifier
            (classes, input size, speck features).
    """
    if config.calc_stream is None:
        return None
    model, ckpt, sha = load_model_file(root, Part.C1_CALC, config)
    path = root / weight_spec(Part.C1_CALC).file
    crop = config.calc_stream.crop_size
    if _input_size(ckpt, path) != (crop, crop):
        raise CheckpointError(str(path), f"input_size differs from calc_stream.crop_size {crop}")
    if not isinstance(model, FeatureClassifier) or model.config.extra_features != len(
        SPECK_FEATURES
    ):
        raise CheckpointError(
            str(path), f"expected a feature classifier with {len(SPECK_FEATURES)} speck features"
        )
    return CalcStream(
        model, _class_index(ckpt, "lesion", path), config.calc_stream, {path.name: sha}
    )


def load_cascade(
    weights_dir: str | os.PathLike[str] = "models",
    *,
    crop_head: str = "hier",
    known_answers: str = "check",
) -> Cascade:
    """Load a cascade from a weights directory (layout of docs/ARCHITECTURE.md).

    Args:
        weights_dir: folder with ``detector.pt``, ``c1_lesion.pt``, ``c2_malignancy.pt``
            (``crop_flat.pt`` for ``crop_head="flat"``) and ``cascade.json``.
        crop_head: ``"hier"`` (C1 + C2: det-hier, the product) or ``"flat"`` (det-flat concept).
        known_answers: ``"check"``: rerun the folder's known answers when it has them (det-hier:
            every part; det-flat: the detector), warn when it has none (a cross-validation
            fold, a training run not yet stamped); ``"require"``: refuse a folder without them
            (what answers users: ``predict``, the app); ``"skip"``: no check (only for
            :func:`stamp_known_answers`, which writes new ones).

    Returns:
        A ready :class:`Cascade` (eval mode, thresholds and, for ``"hier"``, the probability
        calibration from ``cascade.json``). Also sets the
        process's allocator to reuse freed network buffers
        (:func:`hdcnn.runtime.reuse_freed_memory`).

    Raises:
        CheckpointError: ``cascade.json`` is missing or has a bad field, a file is missing,
            corrupt or does not fit, or the known-answer check fails.
    """
    from hdcnn.runtime import reuse_freed_memory

    if crop_head not in ("hier", "flat"):
        raise ValueError(f"crop_head must be 'hier' or 'flat', got {crop_head!r}")
    if known_answers not in KNOWN_ANSWER_MODES:
        raise ValueError(
            f"known_answers must be one of {KNOWN_ANSWER_MODES}, got {known_answers!r}"
        )
    reuse_freed_memory()
    root = Path(weights_dir)
    config = CascadeConfig.load(root)
    source = str(root / CONFIG_FILE)
    detector, det_ckpt, det_sha = load_model_file(root, Part.DETECTOR, config)
    files = {WEIGHT_FILES[Part.DETECTOR].file: det_sha}
    head: CropHead
    if crop_head == "hier":
        (c1, c2), (c1_ckpt, c2_ckpt), (c1_sha, c2_sha), (c1_path, c2_path), size = load_pair(
            root, (Part.C1, Part.C2), config
        )
        head = HierarchicalCropHead(
            c1,
            c2,
            _class_index(c1_ckpt, "lesion", c1_path),
            _class_index(c2_ckpt, "malignant", c2_path),
            size[0],
            {c1_path.name: c1_sha, c2_path.name: c2_sha},
            crop_source=config.crop_source,
        )
        thresholds = config.thresholds
    else:
        head = flat_head(root, config)
        thresholds = config.thresholds_for("det-flat")
    files.update(head.files)
    if config.crop_size != head.crop_size:
        raise CheckpointError(
            source,
            f"field roi.crop_size: {config.crop_size} differs from the classifier input "
            f"{head.crop_size}",
        )
    det_long_side = (det_ckpt.get("config") or {}).get("long_side")
    if det_long_side is not None and det_long_side != config.long_side:
        raise CheckpointError(
            source,
            f"field preprocess.long_side: {config.long_side} differs from the detector's "
            f"long_side {str(det_long_side)[:20]} in {WEIGHT_FILES[Part.DETECTOR].file}",
        )
    # fitted on det-hier's out-of-fold scores: the det-flat head has none
    calibration = config.calibration if crop_head == "hier" else None
    cascade = Cascade(
        detector,
        head,
        calc_stream=load_calc_stream(root, config) if crop_head == "hier" else None,
        thresholds=thresholds,
        calibration=calibration,
        long_side=config.long_side,
        context=config.context,
        max_candidates=config.max_candidates,
        name=config.name or root.resolve().name,
        files=files,
    )
    if known_answers == "skip":
        return cascade
    if config.known_answers is None:
        if known_answers == "require":
            raise CheckpointError(
                source,
                "no known answers: the folder's outputs cannot be checked "
                f"(write them with: python -m hdcnn models stamp {root})",
            )
        log.warning("%s: no known answers, the outputs are NOT checked", source)
    else:
        answers.verify(cascade, config, source, detector_only=crop_head == "flat")
    return cascade


def stamp_known_answers(weights_dir: str | os.PathLike[str]) -> CascadeConfig:
    """Record the folder's det-hier outputs on the reference inputs in its ``cascade.json``
    (``python -m hdcnn models stamp DIR``; after training, shipping or calibration).

    The weights are hash-checked as on every load; answers already there are replaced (a
    warning says which parts they disagreed with).

    Returns:
        The settings written.
    """
    root = Path(weights_dir)
    config = CascadeConfig.load(root)
    cascade = load_cascade(root, known_answers="skip")
    if config.known_answers is not None:
        failures = answers.check(cascade, config.known_answers)
        if failures:
            log.warning("%s: replacing known answers that disagreed: %s", root, "; ".join(failures))
    new = replace(config, known_answers=answers.stamp(cascade))
    new.save(root, hash_files=False)
    return new
