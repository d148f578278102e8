"""Decoding DICOM pixel data (re-exported by :mod:`hdcnn.dicom`; used by the reader).

- :func:`inflate_deflated` -- a Deflated Explicit VR Little Endian file inflated in bounded
  steps (the header's image size decides how much output may follow).
- :func:`check_pixel_header` -- refuse unusable files from the header, before any decoding:
  size, frames, and the sample layouts a mammogram can have (:data:`SAMPLE_LAYOUTS`).
- :func:`decode_stored` -- the stored values; a compressed frame's own header is checked
  first (:mod:`hdcnn.codestream`), then only bounded decoders run.
- :func:`display_pixels` -- modality rescale, VOI LUT / windowing, MONOCHROME1 inversion and
  scaling to float32 ``[0, 1]`` with bright = dense, in row blocks.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Callable

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from hdcnn.codestream import check_frame, codec_of
from hdcnn.decoding import quiet_warnings, scale_to_unit
from hdcnn.errors import MammogramError
from hdcnn.utils import check_image_size

logger = logging.getLogger("hdcnn.dicom")

#: Transfer syntax UID of Deflated Explicit VR Little Endian.
DEFLATED_TS = "1.2.840.10008.1.2.1.99"
#: At most this much inflated output is searched for the image header of a deflated file.
INFLATE_HEADER_BYTES = 16 << 20


def int_tag(ds: Dataset, keyword: str) -> int | None:
    """An integer attribute, or None where it is absent or malformed (never raises)."""
    try:
        value = ds.get(keyword)
        if isinstance(value, (list, pydicom.multival.MultiValue)):
            value = value[0] if len(value) else None
        return int(value) if value not in (None, "") else None
    except Exception:  # malformed values raise anything from ValueError to struct.error
        return None


def text_tag(ds: Dataset, keyword: str) -> str:
    """A text attribute stripped, ``""`` where absent or malformed (never raises)."""
    try:
        value = ds.get(keyword)
        if value is None:
            return ""
        if isinstance(value, (list, pydicom.multival.MultiValue)):
            return "\\".join(str(v) for v in value).strip()
        return str(value).strip()
    except Exception:
        return ""


def _find_us(data: bytes, tag: bytes) -> int | None:
    """Value of an explicit-VR little-endian US element ``tag`` (4 bytes) found in ``data``."""
    i = data.find(tag + b"US\x02\x00")
    if i < 0 or i + 10 > len(data):
        return None
    return int.from_bytes(data[i + 8 : i + 10], "little")


def inflate_deflated(raw: bytes, source: str, *, max_pixels: int, min_side: int) -> bytes:
    """Inflate a Deflated Explicit VR Little Endian file in bounded steps.

    The image header (Rows, Columns, BitsAllocated, SamplesPerPixel) is looked for in the
    first :data:`INFLATE_HEADER_BYTES` of output and checked like any header (size limits);
    then inflation stops as soon as the output exceeds what that image can need (header +
    Rows x Columns x samples x bytes, + 1 MiB). A few kilobytes that inflate to gigabytes are
    refused after at most a few megabytes of output.

    Args:
        raw: the whole file.
        source: name for messages.
        max_pixels, min_side: image size limits (:func:`hdcnn.utils.check_image_size`).

    Returns:
        The same file with the data set inflated and the transfer syntax set to Explicit VR
        Little Endian (pydicom then reads it without inflating anything); ``raw`` itself
        when the file is not deflated.

    Raises:
        MammogramError: corrupt deflate stream, no image header, too large an image, or more
            inflated data than the image needs.
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.filewriter import write_file_meta_info

    fp = DicomBytesIO(raw)
    try:
        preamble = read_preamble(fp, True)
        meta = _read_file_meta_info(fp)
    except Exception as exc:
        raise MammogramError(
            source, f"corrupt DICOM file meta information ({type(exc).__name__})"
        ) from exc
    if str(meta.get("TransferSyntaxUID", "")).strip() != DEFLATED_TS:
        return raw
    start = fp.tell()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending = raw[start:]

    def more(limit: int) -> bool:
        """Inflate up to ``limit`` more bytes; False once the stream has ended."""
        nonlocal pending
        try:
            out.extend(inflater.decompress(pending, limit))
        except zlib.error as exc:
            raise MammogramError(source, f"corrupt deflated DICOM data ({exc})") from exc
        pending = inflater.unconsumed_tail
        return bool(pending) and not inflater.eof

    going = True
    rows = cols = None
    while going and len(out) < INFLATE_HEADER_BYTES:
        going = more(1 << 20)
        rows = _find_us(bytes(out[:INFLATE_HEADER_BYTES]), b"\x28\x00\x10\x00")
        cols = _find_us(bytes(out[:INFLATE_HEADER_BYTES]), b"\x28\x00\x11\x00")
        if rows is not None and cols is not None:
            break
    if rows is None or cols is None:
        if going:
            raise MammogramError(
                source,
                f"deflated DICOM: no Rows/Columns in the first {INFLATE_HEADER_BYTES} bytes "
                "of inflated data",
            )
        rows = cols = 0  # small file without an image header: pydicom reports what is missing
    else:
        check_image_size(source, rows, cols, max_pixels=max_pixels, min_side=min_side)
    head = bytes(out[: min(len(out), INFLATE_HEADER_BYTES)])
    bits = _find_us(head, b"\x28\x00\x00\x01") or 16
    samples = _find_us(head, b"\x28\x00\x02\x00") or 1
    need = rows * cols * max(1, min(samples, 4)) * max(1, (min(bits, 64) + 7) // 8)
    limit = len(head) + need + (1 << 20)
    while going:
        going = more(1 << 20)
        if len(out) > limit:
            raise MammogramError(
                source,
                f"deflated DICOM inflates to more than {limit} bytes, more than its "
                f"{rows}x{cols} image needs",
            )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    buffer.write((preamble or b"\x00" * 128) + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=False)
    return buffer.getvalue() + bytes(out)


#: (SamplesPerPixel, BitsAllocated) layouts a mammogram can have: grey in 8 or 16 bits, or a
#: secondary capture in 8-bit colour. Anything else (RGB 32-bit ...) is refused before
#: decoding: at the pixel limit it would cost gigabytes and it is no mammogram.
SAMPLE_LAYOUTS: frozenset[tuple[int, int]] = frozenset({(1, 8), (1, 16), (3, 8)})
#: Decoding plugins allowed per codec: pydicom's own RLE decoder inflates a segment without
#: bound (2 bytes may give 128), pylibjpeg-rle writes into the frame's buffer only.
_PLUGINS = {"RLE": "pylibjpeg"}


def check_pixel_header(ds: Dataset, source: str, *, max_pixels: int, min_side: int) -> None:
    """Refuse a dataset whose pixels cannot be used, from its header alone.

    Args:
        ds: the dataset as read (pixel data not yet decoded).
        source: the name used in error messages.
        max_pixels: refuse ``Rows * Columns`` above this.
        min_side: refuse images with a side shorter than this.

    Raises:
        MammogramError: no pixel data, missing or implausible Rows/Columns, multi-frame, a
            sample layout outside :data:`SAMPLE_LAYOUTS`, or a transfer syntax without an
            installed decoder.
    """
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise MammogramError(source, "DICOM float pixel data is not supported")
        raise MammogramError(source, "DICOM file has no pixel data")
    rows, cols = int_tag(ds, "Rows"), int_tag(ds, "Columns")
    if rows is None or cols is None:
        raise MammogramError(source, "DICOM file lacks valid Rows/Columns")
    n_frames = int_tag(ds, "NumberOfFrames") or 1
    if n_frames > 1:
        raise MammogramError(
            source, f"multi-frame DICOM ({n_frames} frames) is not supported; expected one image"
        )
    check_image_size(source, rows, cols, max_pixels=max_pixels, min_side=min_side)
    samples, bits = int_tag(ds, "SamplesPerPixel") or 1, int_tag(ds, "BitsAllocated")
    if (samples, bits) not in SAMPLE_LAYOUTS:
        raise MammogramError(
            source,
            f"{samples} samples of {bits} bits per pixel is not a mammogram's layout "
            "(expected 1 sample of 8 or 16 bits, or 3 of 8)",
        )
    tsyntax = transfer_syntax(ds)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise MammogramError(
            source, f"unsupported DICOM transfer syntax {tsyntax} ({tsyntax.name})"
        ) from exc
    plugin = _PLUGINS.get(codec_of(tsyntax) or "")
    if not decoder.is_available or (plugin and plugin not in decoder.available_plugins):
        which = f"{plugin} decoder" if plugin else "decoder"
        raise MammogramError(
            source, f"no {which} installed for DICOM transfer syntax {tsyntax.name} ({tsyntax})"
        )


def check_encoded_frame(ds: Dataset, source: str, *, max_pixels: int) -> None:
    """Refuse a compressed frame whose own header disagrees with the DICOM header.

    The frame is taken as pydicom's decoder takes it (all fragments of frame 0), its header
    parsed by :func:`hdcnn.codestream.check_frame`; nothing is decoded. Native pixel data
    passes unchecked (its size is the header's).

    Raises:
        MammogramError: see :func:`hdcnn.codestream.check_frame`; also unreadable
            encapsulation (item tags, offset tables).
    """
    tsyntax = transfer_syntax(ds)
    if not tsyntax.is_compressed:
        return
    try:
        runner = DecodeRunner(tsyntax)
        runner.set_source(ds)
        frame = get_frame(
            runner.src,
            0,
            number_of_frames=runner.number_of_frames,
            extended_offsets=runner.extended_offsets,
        )
    except Exception as exc:  # malformed item tags, offsets beyond the data ...
        raise MammogramError(
            source, f"corrupt encapsulated DICOM pixel data ({type(exc).__name__})"
        ) from exc
    check_frame(
        frame,
        tsyntax,
        rows=int_tag(ds, "Rows") or 0,
        columns=int_tag(ds, "Columns") or 0,
        samples=int_tag(ds, "SamplesPerPixel") or 1,
        bits_allocated=int_tag(ds, "BitsAllocated") or 0,
        max_pixels=max_pixels,
        source=source,
    )


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax; for files without file meta, from how it was read."""
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsyntax:
        return UID(tsyntax)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    uid = ImplicitVRLittleEndian if implicit in (True, None) else ExplicitVRLittleEndian
    if little is False:
        uid = UID("1.2.840.10008.1.2.2")  # explicit VR big endian
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return uid


def decode_stored(ds: Dataset, source: str, *, max_pixels: int | None = None) -> np.ndarray:
    """The stored values of the (single) frame, ``(H, W)`` or ``(H, W, 3)``, decoded.

    A compressed frame's own size is checked first (:func:`check_encoded_frame`, against
    ``max_pixels``, by default Rows x Columns); only frame 0 is decoded, by the plugins of
    :data:`_PLUGINS` where the codec has a bounded one. Native data comes back as a read-only
    view of the pixel data where pydicom allows (no copy). Colour stays in the colour space
    the decoder returns (YBR is not converted to RGB); PhotometricInterpretation of ``ds`` is
    set to that space where the decoder corrected it (e.g. RGB component ids).

    Raises:
        MammogramError: the frame's header disagrees with the DICOM header, or the pixel data
            is truncated or cannot be decoded.
    """
    from hdcnn.decoding import decoder_stderr

    tsyntax = transfer_syntax(ds)
    limit = (
        max_pixels
        if max_pixels is not None
        else (int_tag(ds, "Rows") or 0) * (int_tag(ds, "Columns") or 0)
    )
    check_encoded_frame(ds, source, max_pixels=limit)
    quiet = decoder_stderr() if tsyntax.is_compressed else contextlib.nullcontext()
    try:
        decoder = get_decoder(tsyntax)
        with quiet:
            arr, properties = decoder.as_array(
                ds,
                index=0,
                decoding_plugin=_PLUGINS.get(codec_of(tsyntax) or "", ""),
                as_writeable=False,
                as_rgb=False,  # pydicom's YBR -> RGB costs 12 bytes a pixel in float32
            )
    except MemoryError:
        raise
    except BaseException as exc:  # decoders raise anything from ValueError to RuntimeError
        if not isinstance(exc, Exception) and not _is_decoder_panic(exc):
            raise  # KeyboardInterrupt, SystemExit
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise MammogramError(
            source, f"could not decode DICOM pixel data ({tsyntax.name}): {text}"
        ) from exc
    colour_space = properties.get("photometric_interpretation")
    if colour_space and colour_space != text_tag(ds, "PhotometricInterpretation"):
        ds.PhotometricInterpretation = colour_space  # what the decoder says it returned
    return np.asarray(arr)


def _is_decoder_panic(exc: BaseException) -> bool:
    """A Rust decoder's panic (``pylibjpeg-rle`` on damaged RLE data): pyo3 raises it as
    ``pyo3_runtime.PanicException``, a ``BaseException`` from a module that cannot be imported."""
    return type(exc).__name__ == "PanicException"


def _displayed_range(ds: Dataset, voi: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
    """(low, high) output of the VOI transform over every possible input value."""
    probe = [np.array([-(2.0**40), 2.0**40])]
    lut = ds.get("VOILUTSequence")
    if lut:
        n_entries, first, _ = (int(v) for v in lut[0].LUTDescriptor)
        n_entries = n_entries or 2**16
        probe = [np.array([first - 1, first + n_entries]), np.arange(first, first + n_entries)]
    out = np.concatenate(
        [np.asarray(voi(p.astype(np.int64 if lut else np.float64)), float) for p in probe]
    )
    return float(out.min()), float(out.max())


#: Modality rescale values outside these bounds are refused (real ones are near 1 and 0).
RESCALE_SLOPE_RANGE = (1e-12, 1e12)
RESCALE_INTERCEPT_MAX = 1e12
#: Pixels per block when a VOI transform runs in float64 (bounds the temporary memory).
_BLOCK = 1 << 20


def _number(ds: Dataset, keyword: str, default: float, source: str) -> float:
    try:
        value = ds.get(keyword)
        if isinstance(value, (list, pydicom.multival.MultiValue)):
            value = value[0] if len(value) else None
        return float(value) if value not in (None, "") else default
    except Exception as exc:
        raise MammogramError(source, f"malformed DICOM {keyword} ({type(exc).__name__})") from exc


def modality_values(ds: Dataset, stored: np.ndarray, source: str) -> np.ndarray:
    """Stored values through the modality LUT or rescale slope/intercept.

    Without a rescale (slope 1, intercept 0) the stored array itself is returned; a rescale is
    computed in float32 after checking that slope and intercept are finite and plausible;
    a ModalityLUTSequence goes through pydicom, any failure of it becomes a MammogramError.

    Raises:
        MammogramError: malformed or implausible modality LUT / rescale values, or a result
            that is not finite.
    """
    try:
        has_lut = bool(ds.get("ModalityLUTSequence"))
    except Exception as exc:
        raise MammogramError(source, "malformed DICOM ModalityLUTSequence") from exc
    if has_lut:
        try:
            with np.errstate(all="ignore"), quiet_warnings():
                values = np.asarray(apply_modality_lut(stored, ds))
        except Exception as exc:  # IndexError, TypeError, struct.error, UFuncTypeError ...
            raise MammogramError(
                source,
                f"malformed DICOM modality LUT (ModalityLUTSequence: {type(exc).__name__})",
            ) from exc
        if values.shape != stored.shape or values.dtype.kind not in "uif":
            raise MammogramError(source, "malformed DICOM modality LUT (unusable output)")
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            raise MammogramError(source, "DICOM modality LUT gives non-finite values")
        return values
    slope = _number(ds, "RescaleSlope", 1.0, source)
    intercept = _number(ds, "RescaleIntercept", 0.0, source)
    low, high = RESCALE_SLOPE_RANGE
    if not (np.isfinite(slope) and low <= abs(slope) <= high):
        raise MammogramError(
            source,
            f"implausible DICOM RescaleSlope {slope:g} (expected {low:g} to {high:g} in magnitude)",
        )
    if not (np.isfinite(intercept) and abs(intercept) <= RESCALE_INTERCEPT_MAX):
        raise MammogramError(
            source,
            f"implausible DICOM RescaleIntercept {intercept:g} (expected at most "
            f"{RESCALE_INTERCEPT_MAX:g} in magnitude)",
        )
    if slope == 1.0 and intercept == 0.0:
        return stored
    values = stored.astype(np.float32)
    values *= np.float32(slope)
    values += np.float32(intercept)
    return values


def _palette_rgb(index: np.ndarray, ds: Dataset, source: str) -> np.ndarray:
    """RGB ``(h, w, 3)`` of palette indices through the dataset's palette colour LUT."""
    try:
        return np.asarray(apply_color_lut(index, ds))
    except Exception as exc:  # malformed palette
        raise MammogramError(
            source, f"invalid DICOM palette colour LUT ({type(exc).__name__})"
        ) from exc


def display_pixels(ds: Dataset, stored: np.ndarray, source: str) -> np.ndarray:
    """Stored values to the displayed image, float32 ``(H, W)`` in ``[0, 1]``, bright = dense.

    Steps: colour images to luminance; modality LUT / rescale slope and intercept
    (:func:`modality_values`); then a VOI LUT (VOILUTSequence, first item) or windowing
    (WindowCenter/Width, first pair, LINEAR, LINEAR_EXACT or SIGMOID), scaled from its
    displayed output range to ``[0, 1]``. Without a VOI transform the modality values are
    min-max scaled over the image's actual range (so a 12-bit image stored in 16 bits is not
    dimmed). MONOCHROME1 is inverted last. An invalid VOI (e.g. window width 0) is ignored
    with a warning. The VOI runs in blocks of about a million pixels, so its float64
    temporaries stay small whatever the image size.

    Args:
        ds: the dataset (its VOI and modality attributes).
        stored: the decoded stored values from :func:`decode_stored`.
        source: name for messages.

    Returns:
        float32 ``(H, W)`` in ``[0, 1]``.

    Raises:
        MammogramError: the image is constant, contains non-finite values, or has malformed
            modality LUT / rescale values.
    """
    photometric = text_tag(ds, "PhotometricInterpretation").upper() or "MONOCHROME2"
    palette = photometric == "PALETTE COLOR" and stored.ndim == 2
    if palette or stored.ndim == 3:
        # a mammogram in colour is shown as luminance, a palette expanded to RGB, both a
        # block of rows at a time (no full-size RGB or float copy)
        values = np.empty(stored.shape[:2], np.float32)
        weights = np.array([0.299, 0.587, 0.114], np.float32)
        for r in range(0, stored.shape[0], 256):
            block = (
                _palette_rgb(stored[r : r + 256], ds, source) if palette else stored[r : r + 256]
            )
            if photometric.startswith("YBR"):  # Y is the luminance (PARTIAL: an affine one)
                values[r : r + 256] = block[:, :, 0]
            else:
                values[r : r + 256] = block[:, :, :3].astype(np.float32) @ weights
        return scale_to_unit(values, source, inplace=True)
    if stored.ndim != 2:
        raise MammogramError(
            source, f"expected a 2-D image, got pixel array of shape {stored.shape}"
        )
    if stored.min() == stored.max():
        raise MammogramError(source, "image is constant (every pixel has the same value)")
    values = modality_values(ds, stored, source)
    try:
        has_voi = bool(ds.get("VOILUTSequence")) or (
            "WindowCenter" in ds and "WindowWidth" in ds and photometric.startswith("MONOCHROME")
        )
    except Exception:  # a malformed VOI LUT sequence: treated as absent below
        has_voi = False
        logger.warning("%s: ignoring a malformed VOI LUT sequence", source)
    image: np.ndarray | None = None
    if has_voi:
        use_lut = False
        with_lut_integral = False
        try:
            use_lut = bool(ds.get("VOILUTSequence"))
            if use_lut and values.dtype.kind == "f":
                with_lut_integral = bool(np.all(values == np.round(values)))
        except Exception:
            use_lut = False

        def voi(a: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"), quiet_warnings():
                return apply_voi_lut(a, ds, index=0, prefer_lut=True)

        own = False
        try:
            low, high = _displayed_range(ds, voi)
            usable = bool(np.isfinite(low) and np.isfinite(high) and high > low)
            if usable:
                # a float32 modality result is ours: the VOI output overwrites it in blocks
                own = (
                    values is not stored
                    and values.dtype == np.float32
                    and values.flags.c_contiguous
                )
                shown = values if own else np.empty(values.shape, np.float32)
                flat_in, flat_out = values.reshape(-1), shown.reshape(-1)
                for i in range(0, flat_in.size, _BLOCK):
                    block = flat_in[i : i + _BLOCK]
                    if use_lut and (with_lut_integral or block.dtype.kind != "f"):
                        block = block.astype(np.int64)  # LUTs index by integer input values
                    flat_out[i : i + _BLOCK] = voi(block)
        except Exception as exc:  # invalid VOI attributes: fall back to min-max
            logger.warning("%s: ignoring invalid VOI LUT / window (%s)", source, type(exc).__name__)
            if own:  # partly overwritten: compute the modality values again
                values = modality_values(ds, stored, source)
        else:
            if usable:
                image = scale_to_unit(shown, source, low=low, high=high, inplace=True)
            else:
                logger.warning("%s: VOI LUT / window has an empty output range; ignored", source)
        if image is not None and float(image.min()) == float(image.max()):
            raise MammogramError(source, "image is constant after applying its VOI LUT / window")
    if image is None:
        image = scale_to_unit(values, source, inplace=values is not stored)
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), image, out=image)
    return image
