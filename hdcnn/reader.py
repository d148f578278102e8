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
the file size (:func:`max_file_bytes`); a deflated DICOM is inflated in bounded steps, so a
small file cannot claim gigabytes. Every bad input raises :class:`hdcnn.errors.MammogramError`
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
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdcnn.decoding import (
    _decoder_messages,
    _install_log_filters,
    _judge_decoder_messages,
    decoder_stderr,
    quiet_warnings,
    scale_to_unit,
)
from hdcnn.errors import HDCNNError, MammogramError
from hdcnn.utils import check_image_size

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


def short_reason(exc: BaseException) -> str:
    """One line for an exception: its first line of text (at most 160 characters) or its type."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


def _check_size(label: str, height: int, width: int, max_pixels: int) -> None:
    check_image_size(label, height, width, max_pixels=max_pixels, min_side=MIN_SIDE)


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
    stored = dicom.decode_stored(ds, label)
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


_PNG_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}


def _png_header(data: bytes, label: str) -> tuple[int, int, int]:
    """(height, width, bit depth) from the IHDR chunk."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise MammogramError(label, "truncated or corrupt PNG header (no IHDR chunk)")
    width, height, depth = struct.unpack(">IIB", data[16:25])
    return height, width, depth


def _png_mode(data: bytes) -> str:
    """The decoded mode named by IHDR's colour type (``"L"``, ``"RGB"`` ...)."""
    mode = _PNG_MODES.get(data[25], "L") if len(data) > 25 else "L"
    return "I;16" if mode == "L" and data[24] == 16 else mode


def _check_png_chunks(data: bytes, label: str) -> None:
    """Walk the chunk list: every chunk must lie inside the file and IEND must end it.

    A chunk length beyond the end of the file (e.g. an IDAT claiming 0xFFFFFFFF bytes) is
    refused here: the decoder would otherwise reserve that much memory.
    """
    import zlib

    i, n = 8, len(data)
    while True:
        if i + 8 > n:
            raise MammogramError(label, "truncated PNG (no IEND chunk)")
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if length > 0x7FFFFFFF or end > n:
            raise MammogramError(
                label,
                f"truncated or corrupt PNG: chunk {kind!r} claims {length} bytes, more than "
                "the file holds",
            )
        if kind in (b"IHDR", b"IDAT", b"PLTE", b"IEND"):
            (crc,) = struct.unpack(">I", data[end - 4 : end])
            if zlib.crc32(data[i + 4 : end - 4]) != crc:
                raise MammogramError(label, f"damaged PNG: CRC error in chunk {kind!r}")
        if kind == b"IEND":
            return
        i = end


_JPEG_COMPONENTS = threading.local()  # components of the last SOF parsed by this thread
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_header(data: bytes, label: str) -> tuple[int, int, int]:
    """(height, width, precision) from the first SOF segment."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise MammogramError(label, "corrupt JPEG: marker expected")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            if i + 10 > n:
                break
            precision = data[i + 4]
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            _JPEG_COMPONENTS.value = data[i + 9]
            return height, width, precision
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        i += 2 + length
    raise MammogramError(label, "truncated or corrupt JPEG (no frame header found)")


def _pgm_tokens(data: bytes, count: int, label: str) -> tuple[list[int], int]:
    """The first ``count`` integers of a netpbm header (comments skipped) and the offset after."""
    values: list[int] = []
    i = 2
    n = len(data)
    while len(values) < count:
        while i < n and data[i : i + 1].isspace():
            i += 1
        if i < n and data[i : i + 1] == b"#":
            while i < n and data[i : i + 1] not in (b"\n", b"\r"):
                i += 1
            continue
        start = i
        while i < n and data[i : i + 1].isdigit():
            i += 1
        if start == i:
            raise MammogramError(label, "truncated or corrupt PGM header")
        values.append(int(data[start:i]))
    return values, i


def _pgm_header(data: bytes, label: str) -> tuple[int, int, int]:
    """(height, width, maxval) of a P2/P5 file."""
    (width, height, maxval), _ = _pgm_tokens(data, 3, label)
    if not 0 < maxval < 65536:
        raise MammogramError(label, f"PGM maxval {maxval} out of range 1..65535")
    return height, width, maxval


def _decode_pgm(data: bytes, label: str) -> np.ndarray:
    (width, height, maxval), end = _pgm_tokens(data, 3, label)
    count = width * height
    if data[:2] == b"P5":
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        body = data[end + 1 :]  # exactly one whitespace byte after maxval
        if len(body) < count * dtype.itemsize:
            raise MammogramError(
                label,
                f"truncated PGM: {len(body)} bytes of pixel data, expected "
                f"{count * dtype.itemsize}",
            )
        arr = np.frombuffer(body, dtype=dtype, count=count)
    else:
        tokens = data[end:].split()
        if len(tokens) < count:
            raise MammogramError(
                label, f"truncated ASCII PGM: {len(tokens)} values, expected {count}"
            )
        try:
            arr = np.array(tokens[:count], dtype=np.int64)
        except ValueError as exc:
            raise MammogramError(label, "corrupt ASCII PGM: non-numeric pixel value") from exc
        arr = arr.astype(np.uint16 if maxval > 255 else np.uint8)
    if int(arr.max()) > maxval:
        raise MammogramError(label, f"corrupt PGM: pixel value above maxval {maxval}")
    return arr.reshape(height, width).astype(np.uint16 if maxval > 255 else np.uint8)


def _tiff_header(data: bytes, label: str) -> tuple[int, int, int, str]:
    """(height, width, frames, mode) read lazily with Pillow (no pixel decoding)."""
    from PIL import Image

    try:
        with quiet_warnings(), Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            mode = str(img.mode)
            frames = int(getattr(img, "n_frames", 1))
            img.seek(0)
            tags = img.tag_v2
            # strips (273/279) or tiles (324/325): every data block must lie in the file
            offsets = tags.get(273) or tags.get(324) or ()
            counts = tags.get(279) or tags.get(325) or ()
    except Image.DecompressionBombError as exc:
        raise MammogramError(
            label, f"TIFF header claims an implausibly large image: {exc}"
        ) from exc
    except Exception as exc:  # Pillow raises many types on corrupt headers
        raise MammogramError(label, f"truncated or corrupt TIFF header: {exc}") from exc
    if any(int(o) + int(c) > len(data) for o, c in zip(offsets, counts, strict=False)):
        raise MammogramError(label, "truncated TIFF (image data extends past the end of file)")
    return height, width, frames, mode


def _decode_cv2(data: bytes, fmt: str, label: str) -> np.ndarray:
    """Decode straight to one grey channel (colour to luminance inside the decoder, keeping
    16 bits): the decoded array costs 1-2 bytes per pixel, never 8."""
    import cv2

    flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH
    try:
        with decoder_stderr():
            arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise MammogramError(
            label, f"could not decode {fmt.upper()} data: {short_reason(exc)}"
        ) from exc
    if arr is None:
        raise MammogramError(label, f"could not decode {fmt.upper()} data (corrupt or truncated)")
    if arr.ndim == 3:  # a decoder that ignored the grey flag
        arr, _ = _to_gray(arr, label)
    return arr


def _to_gray(arr: np.ndarray, label: str) -> tuple[np.ndarray, str]:
    """Luminance of an OpenCV-decoded array (BGR order) and the decoded mode name."""
    if arr.ndim == 2:
        return arr, "I;16" if arr.dtype.itemsize > 1 else "L"
    if arr.ndim != 3:
        raise MammogramError(label, f"unexpected decoded array shape {arr.shape}")
    channels = arr.shape[2]
    if channels == 1:
        return arr[..., 0], "I;16" if arr.dtype.itemsize > 1 else "L"
    if channels == 2:
        return arr[..., 0], "LA"
    if channels in (3, 4):
        gray = np.empty(arr.shape[:2], np.float32)
        weights = (0.114, 0.587, 0.299)
        for r in range(0, arr.shape[0], 256):  # row blocks: no full-size float temporaries
            block = arr[r : r + 256, :, :3].astype(np.float32)
            gray[r : r + 256] = block @ np.array(weights, np.float32)
        return gray, "RGB" if channels == 3 else "RGBA"
    raise MammogramError(label, f"unsupported image with {channels} channels")


def _read_raster(
    data: bytes,
    fmt: str,
    label: str,
    display: str,
    names: list[str],
    max_pixels: int,
) -> Mammogram:
    if fmt == "png":
        height, width, bits = _png_header(data, label)
        _check_size(label, height, width, max_pixels)
        _check_png_chunks(data, label)
        mode = _png_mode(data)
    elif fmt == "jpeg":
        _JPEG_COMPONENTS.value = 1
        height, width, bits = _jpeg_header(data, label)
        _check_size(label, height, width, max_pixels)
        if data.rfind(b"\xff\xd9") < 0:
            raise MammogramError(label, "truncated JPEG (no end-of-image marker)")
        mode = "RGB" if getattr(_JPEG_COMPONENTS, "value", 1) >= 3 else "L"
    elif fmt == "pgm":
        height, width, maxval = _pgm_header(data, label)
        _check_size(label, height, width, max_pixels)
        bits = int(maxval).bit_length()
        mode = ""
    else:
        height, width, frames, mode = _tiff_header(data, label)
        _check_size(label, height, width, max_pixels)
        if frames > 1:
            raise MammogramError(
                label, f"multi-page TIFF ({frames} pages) is not supported; expected one image"
            )
        bits = 0  # from the decoded dtype below

    decoded = _decode_pgm(data, label) if fmt == "pgm" else _decode_cv2(data, fmt, label)
    if decoded.shape[:2] != (height, width):
        raise MammogramError(
            label,
            f"decoded size {decoded.shape[0]}x{decoded.shape[1]} differs from the header's "
            f"{height}x{width}",
        )
    if not bits:
        bits = decoded.dtype.itemsize * 8
    gray, decoded_mode = _to_gray(decoded, label)
    mode = mode or decoded_mode
    del decoded
    pixels = scale_to_unit(gray, label, inplace=gray.dtype == np.float32)
    laterality, view = conventions_from_names(names)
    meta = MammogramMeta(
        source=display,
        format=fmt,
        original_size=(height, width),
        bit_depth=int(bits),
        laterality=laterality,
        view=view,
        photometric=mode,
    )
    logger.debug("read %s: %s %dx%d, %d bits, %s", display, fmt, height, width, bits, mode)
    return Mammogram(pixels=pixels, meta=meta)
