"""The overlay drawn on a mammogram: numbered finding boxes with their tags, in the app, the
PDF report, the close-ups and the presentation-state rendering.

Library code: no streamlit import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hdcnn.palette import FINDING_COLOURS, rgb

#: Overlay colours (RGB) by finding label (:data:`hdcnn.palette.FINDING_COLOURS`).
COLOURS: dict[str, tuple[int, int, int]] = {k: rgb(v) for k, v in FINDING_COLOURS.items()}

#: Finding labels drawn quietly (thin grey box, small number): refused candidates.
QUIET_LABELS = frozenset({"rejected"})
#: Text colour on each tag background (dark text on light colours).
_TAG_TEXT = {"benign": (0, 0, 0), "rejected": (0, 0, 0)}


def display_image(pixels: np.ndarray, *, max_side: int = 1024) -> tuple[np.ndarray, float]:
    """The image as uint8 grey for display, shrunk to ``max_side`` (never enlarged).

    Returns:
        ``(uint8 (h, w), scale)`` with ``scale`` = display pixels per original pixel.
    """
    import cv2

    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise ValueError(f"pixels must be 2-D (H, W), got shape {pixels.shape}")
    height, width = pixels.shape
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1.0:  # shrink first: converting the full-size image costs far more
        pixels = cv2.resize(
            pixels if pixels.dtype == np.uint8 else np.asarray(pixels, dtype=np.float32),
            size,
            interpolation=cv2.INTER_AREA,
        )
    if pixels.dtype == np.uint8:
        return pixels, scale
    return np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8), scale


def _tag_text(finding: Mapping[str, Any], label: str) -> str:
    if "text" in finding:
        return str(finding["text"])
    number = finding.get("number")
    prefix = f"#{number}" if number is not None else ""
    if label in QUIET_LABELS:
        return prefix or label
    merged = len(finding.get("merged") or ())
    return f"{prefix} {label}".strip() + (f" (+{merged})" if merged else "")


def _place(
    rect: tuple[int, int, int, int],
    box: tuple[int, int, int, int],
    placed: list[tuple[int, int, int, int]],
    bounds: tuple[int, int],
) -> tuple[int, int]:
    """Top-left corner of a ``(w, h)`` tag near ``box``, inside the image, clear of ``placed``."""
    tw, th = rect[2], rect[3]
    width, height = bounds
    x1, y1, x2, y2 = box
    candidates = [(x1, y1 - th), (x1, y1), (x1, y2), (x2 - tw, y2 - th), (x2, y1), (x1 - tw, y1)]

    def clamp(x: int, y: int) -> tuple[int, int]:
        return min(max(0, x), max(0, width - tw)), min(max(0, y), max(0, height - th))

    def free(x: int, y: int) -> bool:
        return all(x + tw <= a or a + c <= x or y + th <= b or b + d <= y for a, b, c, d in placed)

    spots = [clamp(x, y) for x, y in candidates]
    for x, y in spots:
        if free(x, y):
            return x, y
    x, y = spots[0]
    for step in range(1, 40):  # slide down (then up) until a free place turns up
        for dy in (step * th, -step * th):
            cx, cy = clamp(x, y + dy)
            if free(cx, cy):
                return cx, cy
    return x, y


def draw_findings(
    grey: np.ndarray,
    findings: Sequence[Mapping[str, Any]],
    *,
    scale: float = 1.0,
    show_rejected: bool = True,
) -> np.ndarray:
    """Draw numbered boxes on a display image.

    What the verdict rests on (``prominent`` findings; for dicts without that key every label
    but ``rejected``, e.g. a crop box) is drawn prominently: a thick box in its label colour
    and a filled tag ``"#n label"``. The rest (refused candidates, weaker kept findings) is
    drawn quietly: a thin box and a small ``"#n"`` tag, and only when ``show_rejected``.
    Findings merged into another (``merged_into``) are never drawn; the one they merged into
    says ``"(+k)"`` in its tag. All
    boxes are drawn before any tag, and tags stay inside the image without overlapping one
    another, at any number of boxes.

    Args:
        grey: uint8 ``(h, w)`` display image (:func:`display_image`).
        findings: dicts with ``box`` in original pixels, ``label``, optional ``number`` (the
            finding's number in the tables), ``prominent`` and ``text`` (replaces the tag).
        scale: display pixels per original pixel.
        show_rejected: draw the quiet boxes too.

    Returns:
        uint8 RGB ``(h, w, 3)``.
    """
    import cv2

    rgb = np.ascontiguousarray(np.repeat(np.asarray(grey, dtype=np.uint8)[:, :, None], 3, axis=2))
    height, width = rgb.shape[:2]
    long_side = max(height, width)
    thick = max(2, round(long_side / 300))
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = max(0.45, long_side / 1600)
    items = []
    for finding in findings:
        if finding.get("merged_into") is not None:
            continue
        label = str(finding.get("label", "lesion"))
        prominent = finding.get("prominent")
        quiet = label in QUIET_LABELS if prominent is None else not prominent
        if quiet and not show_rejected:
            continue
        colour = COLOURS.get(label, COLOURS["lesion"])
        x1, y1, x2, y2 = (round(float(v) * scale) for v in finding["box"])
        x1, x2 = sorted((min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)))
        y1, y2 = sorted((min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)))
        text = _tag_text(finding, "rejected" if quiet else label)
        items.append((quiet, label, colour, (x1, y1, x2, y2), text))
    # boxes: quiet first, so that prominent ones are drawn over them; then every tag on top
    items.sort(key=lambda item: not item[0])
    for quiet, _, colour, (x1, y1, x2, y2), _ in items:
        cv2.rectangle(rgb, (x1, y1), (x2, y2), colour, 1 if quiet else thick)
    placed: list[tuple[int, int, int, int]] = []
    for quiet, label, colour, box, text in sorted(items, key=lambda item: item[0]):
        if not text:
            continue
        fs = font_scale * (0.8 if quiet else 1.0)
        weight = 1 if quiet or fs < 0.9 else 2
        (tw, th), base = cv2.getTextSize(text, font, fs, weight)
        pad = max(2, round(th / 4))
        tag = (0, 0, tw + 2 * pad, th + base + 2 * pad)
        tx, ty = _place(tag, box, placed, (width, height))
        placed.append((tx, ty, tag[2], tag[3]))
        cv2.rectangle(rgb, (tx, ty), (tx + tag[2] - 1, ty + tag[3] - 1), colour, -1)
        cv2.putText(
            rgb,
            text,
            (tx + pad, ty + pad + th),
            font,
            fs,
            _TAG_TEXT.get(label, (255, 255, 255)),
            weight,
            cv2.LINE_AA,
        )
    return rgb


def render_overlay(
    pixels: np.ndarray,
    findings: Sequence[Mapping[str, Any]],
    *,
    max_side: int = 1024,
    show_rejected: bool = True,
) -> np.ndarray:
    """The image with numbered findings drawn (:func:`draw_findings`), shrunk to ``max_side``.

    Args:
        pixels: float32 ``(H, W)`` in ``[0, 1]`` (original pixels, as read) or uint8.
        findings: dicts from :func:`finding_dicts` (boxes in original pixels); an optional
            ``"text"`` key replaces the drawn tag (default: ``"#number label"``).
        max_side: the output's longer side (the image is only ever shrunk).
        show_rejected: draw findings labelled ``rejected`` (thin grey boxes).

    Returns:
        uint8 RGB array ``(h, w, 3)``.
    """
    grey, scale = display_image(pixels, max_side=max_side)
    return draw_findings(grey, findings, scale=scale, show_rejected=show_rejected)
