"""Checkpoint files: plain-type dicts that rebuild their model from the file alone.

Layout of every ``.pt`` file written here (loadable with ``torch.load(weights_only=True)``)::

    {
        "format": "hdcnn-checkpoint/1",
        "kind": "detector" | "classifier" | "feature-classifier",  # which builder
        "config": dataclasses.asdict(cfg),      # DetectorConfig or ClassifierConfig
        "model": state_dict,                    # tensors
        "classes": ["normal", "lesion"],        # output order (detector: ["lesion"])
        "extra": {...},                         # plain types: part, threshold, metrics, epoch ...
        "training": {...},                      # only in last_<part>.pt: optimizer/scheduler/RNG
    }

:func:`load_checkpoint` adds ``"path"`` (the file it read) so later errors can name the file.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hdcnn.errors import CheckpointError
from hdcnn.nets.classifier import ClassifierConfig, build_classifier
from hdcnn.nets.detector import DetectorConfig, build_detector
from hdcnn.utils import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT = "hdcnn-checkpoint/1"
KINDS = ("detector", "classifier", "feature-classifier")
_REQUIRED = ("format", "kind", "config", "model", "classes")


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: str,
    config: dict[str, Any] | Any,
    model: nn.Module,
    classes: list[str],
    extra: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically.

    Args:
        path: destination ``.pt`` file (parent folders are created).
        kind: ``"detector"`` or ``"classifier"``.
        config: the model's config dataclass or its ``asdict``.
        model: the network; a ``DistributedDataParallel`` wrapper is unwrapped.
        classes: output class names in logit order (plain strings).
        extra: JSON-like metadata of plain types (numbers, strings, lists, dicts).
        training: resumable training state (plain types and tensors only).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of {KINDS}")
    cfg = asdict(config) if is_dataclass(config) else dict(config)
    net = model.module if hasattr(model, "module") else model
    payload: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "config": cfg,
        "model": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "classes": [str(c) for c in classes],
        "extra": dict(extra or {}),
    }
    if training is not None:
        payload["training"] = training
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    log.debug("wrote checkpoint %s (%d bytes)", path, buffer.tell())


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: a ``.pt`` file.

    Returns:
        The checkpoint dict (see module docstring) plus ``"path"``: ``str(path)``.

    Raises:
        CheckpointError: missing file, not a torch file, unsafe pickle, or not an hdcnn
            checkpoint (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(str(p), "checkpoint file not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        raise CheckpointError(str(p), f"not a readable checkpoint ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(str(p), f"not an hdcnn checkpoint (expected format {FORMAT!r})")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(str(p), f"checkpoint lacks {missing}")
    if ckpt["kind"] not in KINDS:
        raise CheckpointError(str(p), f"unknown checkpoint kind {ckpt['kind']!r}")
    ckpt.setdefault("extra", {})
    ckpt["path"] = str(p)
    return ckpt


def config_from_checkpoint(ckpt: dict[str, Any]) -> Any:
    """The model config stored in ``ckpt``.

    Raises:
        CheckpointError: the stored config does not fit its kind.
    """
    from hdcnn.nets.features import FeatureConfig

    source = str(ckpt.get("path", "checkpoint"))
    cls = {"detector": DetectorConfig, "feature-classifier": FeatureConfig}.get(
        str(ckpt.get("kind")), ClassifierConfig
    )
    try:
        return cls.from_dict(dict(ckpt["config"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(source, f"bad {ckpt.get('kind')} config: {exc}") from exc


def build_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the network described by ``ckpt`` and load its weights.

    Args:
        ckpt: the dict returned by :func:`load_checkpoint`.

    Returns:
        The model in eval mode on the CPU (a FasterRCNN for ``kind="detector"``, a
        :class:`~hdcnn.nets.classifier.CompactCNN` for ``kind="classifier"``).

    Raises:
        CheckpointError: config or weights that do not fit the architecture.
    """
    source = str(ckpt.get("path", "checkpoint"))
    cfg = config_from_checkpoint(ckpt)
    from hdcnn.nets.features import FeatureConfig, build_feature_classifier

    try:
        if isinstance(cfg, DetectorConfig):
            model: nn.Module = build_detector(cfg)
        elif isinstance(cfg, FeatureConfig):
            model = build_feature_classifier(cfg)
        else:
            model = build_classifier(cfg)
    except ValueError as exc:
        raise CheckpointError(source, f"cannot build model: {exc}") from exc
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, KeyError) as exc:
        raise CheckpointError(source, f"weights do not fit the stored config: {exc}") from exc
    if not isinstance(cfg, DetectorConfig) and len(ckpt["classes"]) != cfg.num_classes:
        raise CheckpointError(source, "number of classes does not match the model outputs")
    model.eval()
    return model


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """``load_checkpoint`` + ``build_from_checkpoint``: ``(model in eval mode, ckpt dict)``."""
    ckpt = load_checkpoint(path)
    return build_from_checkpoint(ckpt), ckpt
