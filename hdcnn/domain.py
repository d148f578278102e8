"""Is an image like the data the models were trained on? A plain out-of-domain notice.

The shipped models were trained on the mini-MIAS database: digitised film, 1024 x 1024 px,
8-bit PGM, 200 µm pixels. An image from another source, format, size, bit depth or pixel
spacing may still get a confident-looking verdict that means little. :func:`check_domain`
compares an image's metadata with a :class:`TrainingDomain` and says, in plain words, what
differs.

The training domain travels with the weights: ``cascade.json`` may hold a
``"training_domain"`` object (keys of :meth:`TrainingDomain.to_dict`); without one,
:data:`MIAS_DOMAIN` is assumed. :class:`hdcnn.config.CascadeConfig` reads it (this module
reads no file: ``CascadeConfig.load(folder).training_domain``).

Library code: no streamlit import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hdcnn import jsonfields as jf


@dataclass(frozen=True)
class TrainingDomain:
    """What the training images looked like.

    Attributes:
        name: the dataset, e.g. ``"mini-MIAS"``.
        description: one plain sentence for users.
        formats: file formats of the training images (``MammogramMeta.format`` values).
        size: ``(height, width)`` in pixels, or None when they varied.
        size_tolerance: relative difference of the long side still counted as "the same size".
        bit_depths: stored bits per sample of the training images.
        pixel_spacing_mm: pixel size in mm, or None when unknown.
        spacing_tolerance: relative difference of the pixel size still counted as the same.
    """

    name: str = "mini-MIAS"
    description: str = (
        "digitised screen-film mammograms (mini-MIAS): 1024 × 1024 px, 8-bit PGM, 200 µm pixels"
    )
    formats: tuple[str, ...] = ("pgm",)
    size: tuple[int, int] | None = (1024, 1024)
    size_tolerance: float = 0.25
    bit_depths: tuple[int, ...] = (8,)
    pixel_spacing_mm: float | None = 0.2
    spacing_tolerance: float = 0.25

    def to_dict(self) -> dict[str, Any]:
        """The ``cascade.json`` ``"training_domain"`` form."""
        return {
            "name": self.name,
            "description": self.description,
            "formats": list(self.formats),
            "size": None if self.size is None else list(self.size),
            "size_tolerance": self.size_tolerance,
            "bit_depths": list(self.bit_depths),
            "pixel_spacing_mm": self.pixel_spacing_mm,
            "spacing_tolerance": self.spacing_tolerance,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingDomain:
        """From the JSON form; absent keys keep the :data:`MIAS_DOMAIN` defaults.

        Raises:
            ValueError: a value has the wrong type or shape.
        """
        base = cls()
        key = "training_domain."
        try:
            size = data.get("size", base.size)
            spacing = data.get("pixel_spacing_mm", base.pixel_spacing_mm)
            domain = cls(
                name=jf.as_text(data.get("name", base.name), key + "name"),
                description=jf.as_text(
                    data.get("description", base.description), key + "description"
                ),
                formats=tuple(
                    jf.as_text(f, key + "formats").lower()
                    for f in data.get("formats", base.formats)
                ),
                size=None if size is None else (_count(size[0], "size"), _count(size[1], "size")),
                size_tolerance=_ratio(
                    data.get("size_tolerance", base.size_tolerance), "size_tolerance"
                ),
                bit_depths=tuple(
                    _count(b, "bit_depths") for b in data.get("bit_depths", base.bit_depths)
                ),
                pixel_spacing_mm=None if spacing is None else _ratio(spacing, "pixel_spacing_mm"),
                spacing_tolerance=_ratio(
                    data.get("spacing_tolerance", base.spacing_tolerance), "spacing_tolerance"
                ),
            )
        except (TypeError, IndexError, KeyError, AttributeError) as exc:
            raise ValueError(f"malformed training_domain ({type(exc).__name__})") from exc
        if size is not None and len(size) != 2:
            raise ValueError("training_domain.size must be [height, width] or null")
        return domain


def _count(value: Any, key: str) -> int:
    return jf.as_int(value, f"training_domain.{key}", 1, 1_000_000)


def _ratio(value: Any, key: str) -> float:
    return jf.as_real(value, f"training_domain.{key}", 0, 100)


#: The domain of the shipped models (used when ``cascade.json`` does not say).
MIAS_DOMAIN = TrainingDomain()


@dataclass(frozen=True)
class DomainCheck:
    """The result of :func:`check_domain`.

    Attributes:
        differences: plain phrases, one per property that differs, e.g.
            ``"DICOM file (trained on PGM)"``; empty when the image looks like the training data.
        domain: the training domain compared with.
    """

    differences: tuple[str, ...] = ()
    domain: TrainingDomain = field(default_factory=TrainingDomain)

    @property
    def in_domain(self) -> bool:
        return not self.differences

    @property
    def notice(self) -> str:
        """One plain paragraph for the result (empty when in domain)."""
        if self.in_domain:
            return ""
        return (
            f"This image is unlike the images the models were trained on "
            f"({self.domain.description}): {'; '.join(self.differences)}. "
            "Its verdict and probabilities may not mean much: do not read a confident "
            "verdict into it."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_domain": self.in_domain,
            "differences": list(self.differences),
            "training_domain": self.domain.name,
        }


def _get(meta: Any, name: str) -> Any:
    if isinstance(meta, Mapping):
        return meta.get(name)
    return getattr(meta, name, None)


def check_domain(meta: Any, domain: TrainingDomain = MIAS_DOMAIN) -> DomainCheck:
    """Compare an image's metadata with the training domain.

    Args:
        meta: a :class:`hdcnn.reader.MammogramMeta` (or a dict with ``format``,
            ``original_size`` ``(h, w)``, ``bit_depth``, ``pixel_spacing`` ``(row, col)`` mm);
            None (e.g. a bare array) gives no difference.
        domain: what the training images were like.

    Returns:
        :class:`DomainCheck`; unknown properties (no pixel spacing in the file) are not
        counted as differences.
    """
    if meta is None:
        return DomainCheck((), domain)
    out: list[str] = []
    fmt = _get(meta, "format")
    if fmt and domain.formats and str(fmt).lower() not in domain.formats:
        trained = "/".join(f.upper() for f in domain.formats)
        out.append(f"{str(fmt).upper()} file (trained on {trained})")
    size = _get(meta, "original_size")
    if size and domain.size:
        h, w = int(size[0]), int(size[1])
        ref = max(domain.size)
        if abs(max(h, w) - ref) > domain.size_tolerance * ref:
            out.append(f"{w} × {h} px (trained on {domain.size[1]} × {domain.size[0]} px)")
    bits = _get(meta, "bit_depth")
    if bits and domain.bit_depths and int(bits) not in domain.bit_depths:
        trained = "/".join(str(b) for b in domain.bit_depths)
        out.append(f"{int(bits)}-bit (trained on {trained}-bit)")
    spacing = _get(meta, "pixel_spacing")
    if spacing and domain.pixel_spacing_mm:
        mm = float(min(spacing))
        ref_mm = domain.pixel_spacing_mm
        if mm > 0 and abs(mm - ref_mm) > domain.spacing_tolerance * ref_mm:
            out.append(f"{mm * 1000:.0f} µm pixels (trained on {ref_mm * 1000:.0f} µm)")
    return DomainCheck(tuple(out), domain)


def exam_notice(checks: list[DomainCheck]) -> str:
    """One plain paragraph for an exam: how many of its views are out of domain, and how
    (the differences of the first such view); empty when every view is in domain."""
    out = [c for c in checks if not c.in_domain]
    if not out:
        return ""
    first = out[0]
    return (
        f"{len(out)} of {len(checks)} views are unlike the images the models were trained on "
        f"({first.domain.description}): {'; '.join(first.differences)}. The verdicts and "
        "probabilities may not mean much: do not read a confident verdict into them."
    )
