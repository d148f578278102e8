"""Raster images (PNG, JPEG, TIFF, PGM): header checks, then decoding to one grey channel.

Used by :func:`hdcnn.reader.read_mammogram`: the size is read from the header (PNG IHDR,
JPEG frame headers via :func:`hdcnn.codestream.jpeg_frame`, PGM header, Pillow's lazy TIFF
header) and checked before anything is decoded; PNG chunks must lie inside the file. Colour
becomes luminance inside the decoder (OpenCV), so the decoded array costs 1-2 bytes per pixel.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass

import numpy as np

from hdcnn.codestream import jpeg_frame
from hdcnn.decoding import decoder_stderr, quiet_warnings, scale_to_unit, short_reason
from hdcnn.errors import MammogramError
from hdcnn.utils import check_image_size


@dataclass(frozen=True)
class RasterImage:
    """A decoded raster image.

    Attributes:
        pixels: float32 ``(H, W)`` in ``[0, 1]`` (min-max over the actual values).
        bits: bits per sample (PNG bit depth, JPEG precision, PGM maxval bits, TIFF dtype).
        mode: the decoded mode (``"L"``, ``"I;16"``, ``"LA"``, ``"RGB"``, ``"RGBA"`` ...).
    """

    pixels: np.ndarray
    bits: int
    mode: str


def decode_raster(
    data: bytes, fmt: str, label: str, *, max_pixels: int, min_side: int
) -> RasterImage:
    """Check the header of a ``fmt`` file (``"png"``, ``"jpeg"``, ``"pgm"``, ``"tiff"``),
    then decode it to grey.

    Raises:
        MammogramError: a corrupt or truncated header, an image outside the size limits,
            a multi-page TIFF, a decoder failure or a decoded size other than the header's.
    """
    if fmt == "png":
        height, width, bits = _png_header(data, label)
        check_image_size(label, height, width, max_pixels=max_pixels, min_side=min_side)
        _check_png_chunks(data, label)
        mode = _png_mode(data)
    elif fmt == "jpeg":
        frame = jpeg_frame(data, label)
        height, width, bits = frame.rows, frame.columns, frame.precision
        check_image_size(label, height, width, max_pixels=max_pixels, min_side=min_side)
        if data.rfind(b"\xff\xd9") < 0:
            raise MammogramError(label, "truncated JPEG (no end-of-image marker)")
        mode = "RGB" if frame.components >= 3 else "L"
    elif fmt == "pgm":
        height, width, maxval = _pgm_header(data, label)
        check_image_size(label, height, width, max_pixels=max_pixels, min_side=min_side)
        bits = int(maxval).bit_length()
        mode = ""
    else:
        height, width, frames, mode = _tiff_header(data, label)
        check_image_size(label, height, width, max_pixels=max_pixels, min_side=min_side)
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
    del decoded
    pixels = scale_to_unit(gray, label, inplace=gray.dtype == np.float32)
    return RasterImage(pixels=pixels, bits=int(bits), mode=mode or decoded_mode)


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


#: ASCII PGM values are parsed this many bytes at a time (the temporaries stay this small).
_ASCII_CHUNK = 8 << 20
#: Longest value an ASCII PGM may hold (characters): a longer run of digits is no pixel value.
_ASCII_TOKEN = 64
_WHITESPACE = re.compile(rb"\s")


def _decode_pgm(data: bytes, label: str) -> np.ndarray:
    """The pixels of a P5 (binary) or P2 (ASCII) file, uint8 or uint16 ``(H, W)``.

    P5 is read in place (no copy of the body); P2 is parsed a chunk at a time into the
    output array, so a file of at most :func:`hdcnn.reader.max_file_bytes` never costs more
    than the image plus one chunk.
    """
    (width, height, maxval), end = _pgm_tokens(data, 3, label)
    count = width * height
    out_dtype = np.uint16 if maxval > 255 else np.uint8
    if data[:2] == b"P5":
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        body = len(data) - (end + 1)  # exactly one whitespace byte after maxval
        if body < count * dtype.itemsize:
            raise MammogramError(
                label,
                f"truncated PGM: {body} bytes of pixel data, expected {count * dtype.itemsize}",
            )
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=end + 1)
    else:
        arr = _ascii_values(data, end, count, out_dtype, label)
    if int(arr.max()) > maxval:
        raise MammogramError(label, f"corrupt PGM: pixel value above maxval {maxval}")
    return arr.reshape(height, width).astype(out_dtype)


def _ascii_values(data: bytes, start: int, count: int, dtype: type, label: str) -> np.ndarray:
    """The first ``count`` whitespace-separated integers of ``data[start:]``."""
    out = np.empty(count, dtype)
    filled, pos, n = 0, start, len(data)
    limit = np.iinfo(dtype).max
    while filled < count and pos < n:
        cut = min(n, pos + _ASCII_CHUNK)
        if cut < n:  # end the chunk at whitespace, so that no value is split
            space = _WHITESPACE.search(data, cut, min(n, cut + _ASCII_TOKEN))
            if space is None and cut + _ASCII_TOKEN < n:
                raise MammogramError(label, "corrupt ASCII PGM: a value of implausible length")
            cut = space.start() if space is not None else n
        try:
            with quiet_warnings():
                values = np.fromstring(data[pos:cut], dtype=np.int64, sep=" ")
        except ValueError as exc:
            raise MammogramError(label, "corrupt ASCII PGM: non-numeric pixel value") from exc
        values = values[: count - filled]
        if values.size and (int(values.min()) < 0 or int(values.max()) > limit):
            raise MammogramError(label, "corrupt ASCII PGM: pixel value out of range")
        out[filled : filled + values.size] = values
        filled += values.size
        pos = cut
    if filled < count:
        raise MammogramError(label, f"truncated ASCII PGM: {filled} values, expected {count}")
    return out


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
