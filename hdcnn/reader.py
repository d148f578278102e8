"""Read any mammogram file or upload into one normalised image with de-identified metadata.

:func:`read_mammogram` accepts DICOM (native, RLE, JPEG baseline/lossless, JPEG-LS and JPEG
2000 transfer syntaxes), PNG, JPEG, TIFF and PGM (binary ``P5`` and ASCII ``P2``), 8- or
16-bit, grayscale or colour. The format is detected from the content, never the extension.

Intensity rules (the same for every format):

- DICOM: modality rescale, then the file's VOI LUT or window (first one) scaled from its
  displayed output range to ``[0, 1]``; without a VOI transform, min-max over the image's
  actual values. MONOCHROME1 is inverted so that bright = dense.
- Raster images: colour to luminance (alpha dropped), then min-max over the actual values.

Size is checked from the header before anything is decoded (:data:`MAX_PIXELS`), and so is
the file size (:func:`max_file_bytes`); a compressed DICOM frame must state the same size in
its own stream (:mod:`hdcnn.codestream`), only grey 8/16-bit and RGB 8-bit sample layouts are
read, and a deflated DICOM is inflated in bounded steps, so a small file cannot claim
gigabytes. Raster formats are in :mod:`hdcnn.raster`, DICOM pixels in
:mod:`hdcnn.dicom_pixels`. Every bad input raises :class:`hdcnn.errors.MammogramError`
naming the input and the problem, never another exception type.

What is refused as not plausibly a mammogram: a DICOM whose Modality is not ``MG`` (``CR``,
``DX`` and ``OT`` only with BodyPartExamined ``BREAST``; without a Modality, a SOP class that is
not an X-ray / secondary-capture image), an image whose decoder reported damage ("premature
end of data", CRC errors, missing bytes ...), images smaller than :data:`MIN_SIDE`, and images
without spatial structure (neighbouring pixels uncorrelated: random noise). Decoder messages
(libpng, libjpeg, OpenCV, OpenJPEG on stderr; pydicom warnings and log records) are captured
while a file is read: damage is refused, anything else is logged as one line naming the file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdcnn.decoding import (
    _decoder_messages,
    _install_log_filters,
    _judge_decoder_messages,
    decoder_stderr,  # noqa: F401  (importable from here, as before the split)
    short_reason,
)
from hdcnn.errors import HDCNNError, MammogramError
from hdcnn.raster import decode_raster

logger = logging.getLogger(__name__)

#: Refuse (before decoding) any image with more pixels than this.
MAX_PIXELS: int = 80_000_000
#: Refuse images with a side shorter than this many pixels.
MIN_SIDE: int = 32
#: Bytes read first to detect the format and parse raster headers.
_HEAD_BYTES = 1 << 20
#: Neighbouring-pixel correlation below which an image is refused as noise.
MIN_STRUCTURE: float = 0.25


def max_file_bytes(max_pixels: int = MAX_PIXELS) -> int:
    """The largest input accepted, in bytes: 4 bytes per allowed pixel plus 64 MiB.

    Uncompressed 32-bit pixels of the largest allowed image fit; anything bigger cannot be a
    usable image of at most ``max_pixels`` pixels and is refused before it is read.
    """
    return 4 * int(max_pixels) + (64 << 20)


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@dataclass(frozen=True)
class MammogramMeta:
    """What is known about an image, without identifying information.

    Attributes:
        source: display name: the file name, or the name given for bytes.
        format: ``"dicom"`` | ``"png"`` | ``"jpeg"`` | ``"pgm"`` | ``"tiff"``.
        original_size: ``(height, width)`` of the pixel array.
        bit_depth: stored bits per sample (8, 12, 16 ...).
        laterality: ``"L"`` | ``"R"`` | None.
        view: ``"CC"`` | ``"MLO"`` | ``"other"`` | None.
        age: patient age in years, or None.
        photometric: DICOM PhotometricInterpretation; for raster files the decoded mode
            (``"L"``, ``"I;16"``, ``"LA"``, ``"RGB"``, ``"RGBA"``).
        pixel_spacing: ``(row, col)`` mm per pixel (PixelSpacing, else ImagerPixelSpacing).
        study_key: 16 hex digits grouping the views of one study within this process
            (HMAC-SHA256 of StudyInstanceUID under a per-process random key: not linkable
            back to the UID or across runs; :func:`hdcnn.dicom.study_key`), or None.
        presentation_intent: ``"FOR PRESENTATION"`` | ``"FOR PROCESSING"`` | None.
        patient_key: 16 hex digits telling one patient's files from another's within this
            process, keyed like ``study_key`` (:func:`hdcnn.dicom.patient_key`), or None;
            never shown or reported.
    """

    source: str
    format: str
    original_size: tuple[int, int]
    bit_depth: int
    laterality: str | None = None
    view: str | None = None
    age: float | None = None
    photometric: str | None = None
    pixel_spacing: tuple[float, float] | None = None
    study_key: str | None = None
    presentation_intent: str | None = None
    patient_key: str | None = None


@dataclass(frozen=True)
class Mammogram:
    """One decoded mammogram.

    Attributes:
        pixels: float32 ``(H, W)`` in ``[0, 1]``, bright = dense tissue, in the file's own
            orientation (no crop, flip or resize).
        meta: the image's :class:`MammogramMeta`.
    """

    pixels: np.ndarray
    meta: MammogramMeta


def read_mammogram(
    source: str | os.PathLike[str] | bytes,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Mammogram:
    """Read a mammogram from a file path or from bytes (an upload).

    Args:
        source: path to a file, or its content as bytes.
        name: display name (``meta.source`` and error messages); defaults to the file name,
            or ``"upload"`` for bytes.
        max_pixels: refuse images with more pixels than this, checked from the header.

    Returns:
        The :class:`Mammogram`: float32 ``(H, W)`` pixels in ``[0, 1]`` and its metadata.

    Raises:
        MammogramError: missing, empty, truncated or unreadable input; not an image; DICOM
            without pixel data, multi-frame or with an unsupported transfer syntax; an image
            larger than ``max_pixels`` or smaller than 32 pixels a side; a constant image.
    """
    path: Path | None = None
    limit = max_file_bytes(max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data: bytes | None = bytes(source)
        display = name or "upload"
        label = display
        size = len(data)
        head = data[:_HEAD_BYTES]
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        display = name or path.name
        label = name or str(path)
        data = None
        head = _read_head(path, label)
        size = _file_size(path, label)
    else:
        raise MammogramError(
            name or type(source).__name__, "expected a file path or the file's bytes"
        )
    if not head:
        raise MammogramError(label, "file is empty")
    fmt = _sniff(head)
    if fmt is None:
        raise MammogramError(
            label,
            "not a recognised image: expected DICOM, PNG, JPEG, TIFF or PGM content "
            "(the format is detected from the content, not the file extension)",
        )
    if size > limit:
        raise MammogramError(
            label,
            f"file of {size} bytes is larger than any image of at most {max_pixels} pixels "
            f"can be ({limit} bytes)",
        )
    names = [display] + ([p.name for p in path.parents][:3] if path is not None else [])
    try:
        with _decoder_messages() as notes:
            if fmt == "dicom":
                mammo = _read_dicom(
                    path if data is None else data, label, display, names, max_pixels
                )
            else:
                if data is None:
                    data = _read_all(path, label)  # type: ignore[arg-type]
                mammo = _read_raster(data, fmt, label, display, names, max_pixels)
    except HDCNNError:
        raise
    except MemoryError as exc:
        raise MammogramError(label, "not enough memory to decode this image") from exc
    except RecursionError as exc:
        raise MammogramError(label, f"corrupt {fmt.upper()} file (nesting too deep)") from exc
    except Exception as exc:  # a decoder failing in a way not foreseen above: still one error
        raise MammogramError(label, f"unreadable {fmt.upper()} data ({short_reason(exc)})") from exc
    _judge_decoder_messages(notes, label)
    check_pixels(mammo.pixels, label)
    check_structure(mammo.pixels, label)
    return mammo


def check_pixels(pixels: np.ndarray, label: str) -> None:
    """Refuse pixels that break the contract: float32 ``(H, W)``, finite, within ``[0, 1]``.

    Raises:
        MammogramError: naming ``label``.
    """
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype != np.float32:
        raise MammogramError(label, "decoding gave no 2-D float32 image")
    lo, hi = float(np.min(pixels)), float(np.max(pixels))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise MammogramError(label, "image contains non-finite values after decoding")
    if lo < 0.0 or hi > 1.0:
        raise MammogramError(label, f"decoded values {lo:g}..{hi:g} lie outside [0, 1]")
    if hi <= lo:
        raise MammogramError(label, "image is constant (every pixel has the same value)")


def check_structure(pixels: np.ndarray, label: str, *, minimum: float = MIN_STRUCTURE) -> None:
    """Refuse an image without spatial structure (random noise is no mammogram).

    The correlation of horizontally and vertically neighbouring pixels is measured on a grid
    of at most about 512 x 512 pixels; a real image (smooth tissue, a dark background) gives
    0.8 and more, independent noise about 0.

    Raises:
        MammogramError: the correlation is below ``minimum``.
    """
    step = max(1, -(-max(pixels.shape) // 512))
    grid = pixels[::step, ::step].astype(np.float64)
    if min(grid.shape) < 2:
        return
    pairs = (
        (grid[:, :-1].ravel(), grid[:, 1:].ravel()),
        (grid[:-1, :].ravel(), grid[1:, :].ravel()),
    )
    rho = []
    for a, b in pairs:
        sa, sb = a.std(), b.std()
        if sa <= 0 or sb <= 0:
            continue
        rho.append(float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)))
    if rho and max(rho) < minimum:
        raise MammogramError(
            label,
            f"not plausibly a mammogram: neighbouring pixels are uncorrelated "
            f"(correlation {max(rho):.2f}; random noise?)",
        )


# ----------------------------------------------------------------------------- input


def _read_head(path: Path, label: str) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(_HEAD_BYTES)
    except FileNotFoundError as exc:
        raise MammogramError(label, "file not found") from exc
    except IsADirectoryError as exc:
        raise MammogramError(label, "is a directory, not an image file") from exc
    except OSError as exc:
        raise MammogramError(label, f"cannot read file: {exc.strerror or exc}") from exc


def _file_size(path: Path, label: str) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise MammogramError(label, f"cannot read file: {exc.strerror or exc}") from exc


def _read_all(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MammogramError(label, f"cannot read file: {exc.strerror or exc}") from exc


def _sniff(head: bytes) -> str | None:
    """The format from the first bytes: dicom, png, jpeg, tiff, pgm or None."""
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    if head[:2] in (b"P2", b"P5") and head[2:3].isspace():
        return "pgm"
    # DICOM without the 128-byte preamble: starts with a group 0002 or 0008 tag.
    if len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00":
        return "dicom"
    return None


# ----------------------------------------------------------------------------- naming


_LATERALITY_WORDS = {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}
_VIEW_TOKEN = re.compile(r"(L|R|LEFT|RIGHT)?(CC|MLO)")


def conventions_from_names(texts: list[str]) -> tuple[str | None, str | None]:
    """Laterality and view from naming conventions, e.g. CBIS-DDSM ``P_00001_LEFT_CC``,
    INbreast ``..._MG_R_CC_...``, ``RMLO.png``.

    Texts are split into tokens at anything but letters and digits; the first text that names
    exactly one side (or one view) decides it.

    Args:
        texts: candidate names in priority order (file name, DICOM descriptions, folders).

    Returns:
        ``(laterality, view)`` with ``"L"``/``"R"`` and ``"CC"``/``"MLO"``, None where unknown.
    """
    laterality: str | None = None
    view: str | None = None
    for text in texts:
        sides: set[str] = set()
        views: set[str] = set()
        for token in re.split(r"[^A-Z0-9]+", text.upper()):
            if token in _LATERALITY_WORDS:
                sides.add(_LATERALITY_WORDS[token])
            match = _VIEW_TOKEN.fullmatch(token)
            if match:
                if match.group(1):
                    sides.add(_LATERALITY_WORDS[match.group(1)])
                views.add(match.group(2))
        if laterality is None and len(sides) == 1:
            laterality = sides.pop()
        if view is None and len(views) == 1:
            view = views.pop()
        if laterality is not None and view is not None:
            break
    return laterality, view


# ----------------------------------------------------------------------------- DICOM


def _read_dicom(
    src: Path | bytes,
    label: str,
    display: str,
    names: list[str],
    max_pixels: int,
) -> Mammogram:
    import pydicom
    import pydicom.pixels  # decoder loggers exist before the filters are installed
    from pydicom.errors import InvalidDicomError

    from hdcnn import dicom

    _install_log_filters()
    raw = src if isinstance(src, bytes) else None
    start = raw[:65536] if raw is not None else _read_head(src, label)[:65536]  # type: ignore[arg-type]
    if dicom.DEFLATED_TS.encode() in start:
        # A deflated data set is inflated here, in bounded steps, before pydicom sees it:
        # pydicom would inflate all of it at once, whatever the header's image size.
        raw = raw if raw is not None else _read_all(src, label)  # type: ignore[arg-type]
        raw = dicom.inflate_deflated(raw, label, max_pixels=max_pixels, min_side=MIN_SIDE)
    try:
        if raw is not None:
            ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        else:
            # Large values (pixel data) are read only when used: the size is checked first.
            ds = pydicom.dcmread(src, force=True, defer_size="1 MB")
    except InvalidDicomError as exc:
        raise MammogramError(label, f"not a valid DICOM file: {short_reason(exc)}") from exc
    except Exception as exc:  # pydicom raises EOFError, ValueError, struct.error ...
        raise MammogramError(
            label, f"truncated or corrupt DICOM file: {short_reason(exc)}"
        ) from exc
    if "PixelData" not in ds and _has_pixel_data_tag(raw if raw is not None else src, label):
        raise MammogramError(label, "truncated or corrupt DICOM file: pixel data is incomplete")
    if len(ds) == 0:
        raise MammogramError(label, "truncated or corrupt DICOM file (no data elements)")

    dicom.check_modality(ds, label)
    dicom.check_pixel_header(ds, label, max_pixels=max_pixels, min_side=MIN_SIDE)
    stored = dicom.decode_stored(ds, label, max_pixels=max_pixels)
    rows, cols = int(ds.Rows), int(ds.Columns)
    if stored.shape[:2] != (rows, cols):
        raise MammogramError(
            label, f"decoded pixel array {stored.shape} does not match Rows x Columns {rows}x{cols}"
        )
    with contextlib.suppress(Exception):
        del ds.PixelData  # the encoded bytes are no longer needed: free them before scaling
    stored_bits = stored.dtype.itemsize * 8
    pixels = dicom.display_pixels(ds, stored, label)
    del stored

    laterality = _optional(dicom.laterality_from_tags, ds)
    view = _optional(dicom.view_from_tags, ds)
    if laterality is None or view is None:
        texts = [names[0], *(_optional(dicom.convention_texts, ds) or []), *names[1:]]
        named_side, named_view = conventions_from_names(texts)
        laterality = laterality or named_side
        view = view or named_view
    bits = dicom.int_tag(ds, "BitsStored") or dicom.int_tag(ds, "BitsAllocated") or stored_bits
    photometric = dicom.text_tag(ds, "PhotometricInterpretation") or None
    intent = dicom.text_tag(ds, "PresentationIntentType").upper() or None
    meta = MammogramMeta(
        source=display,
        format="dicom",
        original_size=(rows, cols),
        bit_depth=int(bits),
        laterality=laterality,
        view=view,
        age=_optional(dicom.age_from_tags, ds, source=label),
        photometric=photometric,
        pixel_spacing=_optional(dicom.pixel_spacing_from_tags, ds),
        study_key=dicom.study_key(ds),
        presentation_intent=intent,
        patient_key=dicom.patient_key(ds),
    )
    logger.debug("read %s: DICOM %dx%d, %d bits", display, rows, cols, meta.bit_depth)
    return Mammogram(pixels=pixels, meta=meta)


def _optional(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """``fn(*args)`` for an optional metadata field; None where a malformed header breaks it."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        logger.debug("optional DICOM metadata %s unreadable (%s)", fn.__name__, type(exc).__name__)
        return None


def _has_pixel_data_tag(src: Path | bytes, label: str) -> bool:
    """True if the raw file holds a (7FE0,0010) tag, i.e. pixel data pydicom could not parse."""
    data = src if isinstance(src, bytes) else _read_all(src, label)
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


# ----------------------------------------------------------------------------- raster


def _read_raster(
    data: bytes,
    fmt: str,
    label: str,
    display: str,
    names: list[str],
    max_pixels: int,
) -> Mammogram:
    image = decode_raster(data, fmt, label, max_pixels=max_pixels, min_side=MIN_SIDE)
    laterality, view = conventions_from_names(names)
    height, width = image.pixels.shape
    meta = MammogramMeta(
        source=display,
        format=fmt,
        original_size=(height, width),
        bit_depth=image.bits,
        laterality=laterality,
        view=view,
        photometric=image.mode,
    )
    logger.debug(
        "read %s: %s %dx%d, %d bits, %s", display, fmt, height, width, image.bits, image.mode
    )
    return Mammogram(pixels=image.pixels, meta=meta)
