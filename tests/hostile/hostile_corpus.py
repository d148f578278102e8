"""A malformed-input corpus, generated (never downloaded): one family per failure of issue 12.

Every case is ``Case(name, data, family, expect)``: the file's bytes, the family it belongs to
and a regular expression the :class:`hdcnn.errors.MammogramError` problem must match. Cases
are small (a few MB at most) and built in well under a second each.

Families:
    lut: malformed modality LUT / rescale values (raw IndexError ... from pydicom before).
    bomb: small files that claim huge images or inflate without bound.
    damage: data the decoder reports as damaged (premature end, CRC errors, missing bytes).
    foreign: not plausibly a mammogram (CT/MR/US/NM/SEG, random noise, tiny images).
    noisy: inputs whose decoders talk on stderr or whose headers hold junk (JPEG 2000 damage,
        a malformed PatientAge carrying a planted identifier).
    liar: compressed DICOM whose stream states another size than the header (issue 21: a
        13 KB JPEG whose frame header says 65535 x 65535 took the server to 16 GB), RLE
        segment headers that lie, and sample layouts no mammogram has (RGB 32-bit).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from hdcnn.dicom import build_dicom
from tests.dicom_factory import phantom

#: Planted in headers of the corpus: must never appear in any message, log or output.
PLANTED = "ZZSECRET-4711"
DEFLATED = "1.2.840.10008.1.2.1.99"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    family: str
    expect: str  # regex on the error's problem text


def base_pixels() -> np.ndarray:
    """A 256 x 192 12-bit breast phantom (passes every plausibility check)."""
    return phantom(256, 192, bits=12, seed=3)


def dicom_bytes(ds: Dataset, *, compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    if compressed:
        ds.save_as(buf, enforce_file_format=True)
    else:
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def good_dicom(**extra: object) -> Dataset:
    ds = build_dicom(base_pixels(), laterality="L", view="CC", patient_id=PLANTED)
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def good_png() -> bytes:
    ok, buf = cv2.imencode(".png", (base_pixels() >> 4).astype(np.uint8))
    assert ok
    return buf.tobytes()


def good_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", (base_pixels() >> 4).astype(np.uint8))
    assert ok
    return buf.tobytes()


def _set_raw(ds: Dataset, keyword: str, vr: str, value: object) -> None:
    """Set a value without pydicom's validation (as a hostile writer would)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    with pydicom.config.disable_value_validation():
        ds.add_new(tag, vr, value)


def _lut_item(descriptor: list[int], data: list[int]) -> Dataset:
    item = Dataset()
    with pydicom.config.disable_value_validation():
        item.LUTDescriptor = descriptor
        item.ModalityLUTType = "HU"
        item.add_new(0x00283006, "US", data)  # LUTData
    return item


def lut_cases() -> list[Case]:
    cases = []
    for name, descriptor, data in (
        ("lut_short.dcm", [10, 0, 16], [1, 2, 3]),
        ("lut_descriptor_vm1.dcm", [10], [1, 2, 3]),
        ("lut_zero_bits.dcm", [4096, 0, 0], list(range(16))),
        ("lut_first_beyond.dcm", [4, 65000, 16], [1, 2, 3, 4]),
    ):
        ds = good_dicom()
        ds.ModalityLUTSequence = Sequence([_lut_item(descriptor, data)])
        cases.append(Case(name, dicom_bytes(ds), "lut", r"modality LUT|constant|LUT"))
    for name, slope, intercept in (
        ("rescale_tiny.dcm", "1e-300", "0"),
        ("rescale_huge.dcm", "1e300", "0"),
        ("rescale_nan.dcm", "NaN", "0"),
        ("rescale_inf.dcm", "inf", "0"),
        ("rescale_zero.dcm", "0", "0"),
        ("intercept_huge.dcm", "1", "1e308"),
        ("rescale_text.dcm", "abc", "0"),
    ):
        ds = good_dicom()
        text = slope if slope != "abc" else "7.77"  # pydicom refuses "abc": patched below
        _set_raw(ds, "RescaleSlope", "DS", text)
        _set_raw(ds, "RescaleIntercept", "DS", intercept)
        data = dicom_bytes(ds)
        if slope == "abc":
            data = data.replace(b"7.77", b"abc ")
        cases.append(Case(name, data, "lut", r"RescaleSlope|RescaleIntercept"))
    return cases


# ----------------------------------------------------------------------------- bombs


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_idat_length_bomb() -> bytes:
    """A ~1 KB PNG whose IDAT length field says 0xFFFFFFFF."""
    png = good_png()
    i = png.index(b"IDAT") - 4
    return png[:i] + b"\xff\xff\xff\xff" + png[i + 4 :]


def deflated_dicom(rows: int, cols: int, pixel_bytes: int) -> bytes:
    """A Deflated Explicit VR Little Endian DICOM claiming ``rows x cols`` 16-bit pixels,
    whose deflated stream holds ``pixel_bytes`` zero bytes of pixel data."""
    ds = good_dicom()
    ds.Rows, ds.Columns = rows, cols
    ds.PixelData = b""
    small = io.BytesIO()
    ds.save_as(small, enforce_file_format=True)  # explicit VR LE, empty pixel data
    raw = small.getvalue()
    meta_end = _meta_end(raw)
    body = raw[meta_end:]
    # replace the empty pixel data element by one of pixel_bytes zeros
    tag = b"\xe0\x7f\x10\x00OW\x00\x00"
    j = body.rindex(tag)
    body = body[:j] + tag + struct.pack("<I", pixel_bytes)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [comp.compress(body)]
    zero = bytes(1 << 20)
    left = pixel_bytes
    while left > 0:
        n = min(left, len(zero))
        parts.append(comp.compress(zero[:n]))
        left -= n
    parts.append(comp.flush())
    meta = pydicom.filebase.DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    meta.write(b"\x00" * 128 + b"DICM")
    ds.file_meta.TransferSyntaxUID = DEFLATED
    pydicom.filewriter.write_file_meta_info(meta, ds.file_meta, enforce_standard=False)
    return meta.getvalue() + b"".join(parts)


def _meta_end(raw: bytes) -> int:
    """Offset where the data set starts (after the group 0002 elements)."""
    (group_length,) = struct.unpack("<I", raw[140:144])
    return 144 + group_length


def bomb_cases() -> list[Case]:
    huge_png = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 16, 0, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + png_chunk(b"IEND", b"")
    )
    return [
        Case("idat_ffffffff.png", png_idat_length_bomb(), "bomb", r"claims \d+ bytes"),
        Case("claims_60000.dcm", deflated_dicom(60000, 60000, 16 << 20), "bomb", r"larger than"),
        Case("inflates_too_far.dcm", deflated_dicom(256, 192, 48 << 20), "bomb", r"inflates to"),
        Case("huge_header.png", huge_png, "bomb", r"larger than"),
    ]


# ----------------------------------------------------------------------------- damage


def _jpeg_premature() -> bytes:
    """A JPEG whose entropy-coded data stops early, EOI kept: libjpeg says 'premature end'."""
    jpg = good_jpeg()
    sos = jpg.index(b"\xff\xda")
    cut = sos + (len(jpg) - sos) // 3
    return jpg[:cut] + b"\xff\xd9"


def _png_bad_crc() -> bytes:
    png = bytearray(good_png())
    i = png.index(b"IDAT") + 10
    png[i] ^= 0xFF
    return bytes(png)


def _png_bad_zlib() -> bytes:
    """IDAT data changed, CRC recomputed: only zlib/libpng can notice."""
    png = good_png()
    i = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[i : i + 4])
    body = bytearray(png[i + 8 : i + 8 + length])
    body[len(body) // 2 :] = bytes(len(body) - len(body) // 2)  # zeros: invalid deflate
    return png[:i] + png_chunk(b"IDAT", bytes(body)) + png[i + 12 + length :]


def _dicom_short_native() -> bytes:
    ds = good_dicom()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return dicom_bytes(ds)


def _encapsulated(ds: Dataset, tsyntax: str) -> Dataset:
    return _set_frame(ds, _encoded_frame(ds, tsyntax), tsyntax)


def _set_frame(ds: Dataset, frame: bytes, tsyntax: str) -> Dataset:
    """``ds`` with ``frame`` as its one encapsulated frame."""
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = tsyntax
    return ds


def _pixel_kwargs(ds: Dataset) -> dict:
    return {
        "rows": ds.Rows,
        "columns": ds.Columns,
        "samples_per_pixel": 1,
        "bits_allocated": ds.BitsAllocated,
        "bits_stored": ds.BitsStored,
        "pixel_representation": 0,
        "photometric_interpretation": "MONOCHROME2",
        "number_of_frames": 1,
    }


def _dicom_truncated_fragment(tsyntax: str) -> bytes:
    ds = _encapsulated(good_dicom(), tsyntax)
    raw = dicom_bytes(ds, compressed=True)
    # cut the middle of the (single) fragment, keep the sequence delimiter
    end = raw.rindex(b"\xfe\xff\xdd\xe0")
    start = raw.rindex(b"\xfe\xff\x00\xe0", 0, end)
    frag = raw[start + 8 : end]
    keep = frag[: len(frag) // 2]
    keep += b"\x00" * (len(keep) % 2)
    return raw[:start] + b"\xfe\xff\x00\xe0" + struct.pack("<I", len(keep)) + keep + raw[end:]


def _dicom_rle_overrun() -> bytes:
    """RLE segments whose runs write past the end of the frame (a Rust decoder panicked)."""
    ds = good_dicom()
    segments = ds.BitsAllocated // 8 * ds.SamplesPerPixel
    runs = (ds.Rows * ds.Columns) // 128 + 4  # replicate runs of 128: more than the frame holds
    segment = b"\x81\x07" * runs
    offsets = [64 + i * len(segment) for i in range(segments)]
    header = struct.pack("<16I", segments, *offsets, *([0] * (15 - segments)))
    ds.PixelData = encapsulate([header + segment * segments])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    return dicom_bytes(ds, compressed=True)


def damage_cases() -> list[Case]:
    damaged = r"damaged|truncated|corrupt|could not decode|incomplete|decode"
    return [
        Case("premature.jpg", _jpeg_premature(), "damage", damaged),
        Case("bad_crc.png", _png_bad_crc(), "damage", r"CRC"),
        Case("bad_zlib.png", _png_bad_zlib(), "damage", damaged),
        Case("short_native.dcm", _dicom_short_native(), "damage", damaged),
        Case("rle_half.dcm", _dicom_truncated_fragment(RLELossless), "damage", damaged),
        Case("rle_overrun.dcm", _dicom_rle_overrun(), "damage", damaged),
    ]


# ----------------------------------------------------------------------------- foreign


def foreign_cases() -> list[Case]:
    cases = []
    for modality in ("CT", "MR", "US", "NM", "SEG", "PT"):
        ds = good_dicom(Modality=modality)
        cases.append(Case(f"modality_{modality}.dcm", dicom_bytes(ds), "foreign", modality))
    ds = good_dicom()
    del ds.Modality
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    cases.append(Case("no_modality_ct_class.dcm", dicom_bytes(ds), "foreign", r"CT Image"))
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    cases.append(Case("noise32.pgm", b"P5\n32 32\n255\n" + noise.tobytes(), "foreign", "noise"))
    big = rng.integers(0, 65536, (256, 256), dtype=np.uint16)
    _ok, buf = cv2.imencode(".png", big)
    cases.append(Case("noise256.png", buf.tobytes(), "foreign", "noise"))
    tiny = b"P5\n16 16\n255\n" + bytes(range(256))
    cases.append(Case("tiny16.pgm", tiny, "foreign", "too small"))
    return cases


# ----------------------------------------------------------------------------- noisy


def noisy_cases() -> list[Case]:
    j2k = _dicom_truncated_fragment(JPEG2000Lossless)
    ds = good_dicom()
    _set_raw(ds, "PatientAge", "AS", f"{PLANTED}Y")
    ds.Modality = "CT"  # so that the case is refused: PatientAge is logged before? never.
    return [
        Case("j2k_half.dcm", j2k, "noisy", r"damaged|could not decode|decode"),
        Case("age_junk_ct.dcm", dicom_bytes(ds), "noisy", r"Modality"),
    ]


# ----------------------------------------------------------------------------- liar


def _jpeg_baseline_dicom() -> tuple[Dataset, bytes]:
    """An 8-bit MG DICOM with one JPEG baseline frame (OpenCV's encoder), and that frame."""
    pixels8 = (base_pixels() >> 4).astype(np.uint8)
    ds = build_dicom(pixels8, laterality="L", view="CC", patient_id=PLANTED)
    ok, buf = cv2.imencode(".jpg", pixels8, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return ds, buf.tobytes()


def with_frame(ds: Dataset, frame: bytes, tsyntax: str) -> bytes:
    """``ds`` with ``frame`` as its one encapsulated frame, as file bytes."""
    return dicom_bytes(_set_frame(ds, frame, tsyntax), compressed=True)


def _patch_marker(stream: bytes, marker: bytes, offset: int, value: bytes) -> bytes:
    """``value`` written ``offset`` bytes after the first ``marker`` of ``stream``."""
    i = stream.index(marker) + offset
    return stream[:i] + value + stream[i + len(value) :]


def jpeg_sof_lie(height: int = 65535, width: int = 65535) -> bytes:
    """Issue 21's reproducer: a JPEG baseline MG DICOM whose SOF0 says ``height x width``."""
    ds, jpg = _jpeg_baseline_dicom()
    frame = _patch_marker(jpg, b"\xff\xc0", 5, struct.pack(">HH", height, width))
    return with_frame(ds, frame, JPEGBaseline8Bit)


def _jpeg_precision_lie() -> bytes:
    ds, jpg = _jpeg_baseline_dicom()
    return with_frame(ds, _patch_marker(jpg, b"\xff\xc0", 4, b"\x10"), JPEGBaseline8Bit)


def _encoded_frame(ds: Dataset, tsyntax: str) -> bytes:
    return get_encoder(tsyntax).encode(ds.pixel_array, **_pixel_kwargs(ds))


def jpegls_sof_lie(height: int = 60000, width: int = 60000) -> bytes:
    """A JPEG-LS MG DICOM whose SOF55 says ``height x width`` (issue 21: over 10 GB)."""
    ds = good_dicom()
    frame = _encoded_frame(ds, JPEGLSLossless)
    frame = _patch_marker(frame, b"\xff\xf7", 5, struct.pack(">HH", height, width))
    return with_frame(ds, frame, JPEGLSLossless)


def _jpegls_lse_lie() -> bytes:
    """SOF55 tells the truth; an LSE "oversize dimension" record after it claims 60000^2."""
    ds = good_dicom()
    frame = _encoded_frame(ds, JPEGLSLossless)
    i = frame.index(b"\xff\xda")  # before the first scan
    lse = b"\xff\xf8" + struct.pack(">HBB", 13, 4, 4) + struct.pack(">II", 60000, 60000)
    return with_frame(ds, frame[:i] + lse + frame[i:], JPEGLSLossless)


def j2k_siz_lie(height: int = 40000, width: int = 40000, *, jp2: bool = False) -> bytes:
    """A JPEG 2000 MG DICOM whose SIZ says ``height x width`` (issue 21: 7.2 GB); with
    ``jp2`` the codestream is wrapped in JP2 boxes (signature, ftyp, jp2h/ihdr, jp2c)."""
    ds = good_dicom()
    code = _encoded_frame(ds, JPEG2000Lossless)
    code = _patch_marker(code, b"\xff\x51", 6, struct.pack(">II", width, height))
    if jp2:

        def box(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", 8 + len(body)) + kind + body

        ihdr = box(b"ihdr", struct.pack(">IIHBBBB", ds.Rows, ds.Columns, 1, 11, 7, 0, 0))
        code = (
            b"\x00\x00\x00\x0cjP  \r\n\x87\n"
            + box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
            + box(b"jp2h", ihdr)
            + box(b"jp2c", code)
        )
    return with_frame(ds, code, JPEG2000Lossless)


def rle_segment_lie(*, count: int | None = None, beyond: bool = False) -> bytes:
    """An RLE MG DICOM whose segment header lies: ``count`` segments, or offsets past the end."""
    ds = good_dicom()
    frame = bytearray(_encoded_frame(ds, RLELossless))
    if count is not None:
        frame[0:4] = struct.pack("<I", count)
    if beyond:
        frame[8:12] = struct.pack("<I", 0x7FFFFFF0)
    return with_frame(ds, bytes(frame), RLELossless)


def _rle_segment(plane: np.ndarray) -> bytes:
    """One RLE segment of a uint8 ``(H, W)`` byte plane (pydicom's encoder, one segment)."""
    frame = get_encoder(RLELossless).encode(
        np.ascontiguousarray(plane),
        rows=plane.shape[0],
        columns=plane.shape[1],
        samples_per_pixel=1,
        bits_allocated=8,
        bits_stored=8,
        pixel_representation=0,
        photometric_interpretation="MONOCHROME2",
        number_of_frames=1,
    )
    return frame[64:]


def rle_rgb32(grey: np.ndarray | None = None) -> bytes:
    """A legal RLE DICOM of 3 samples x 32 bits (``grey`` in every channel, default the base
    phantom): a layout no mammogram has (issue 21: an 8,944^2 one took 1.9 GB to read)."""
    grey = base_pixels() if grey is None else grey
    ds = good_dicom()
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit = 31
    segments = []
    for _sample in range(3):
        for shift in (24, 16, 8, 0):  # most significant byte first (PS3.5 G.2)
            plane = ((grey.astype(np.uint32) << 16) >> shift & 0xFF).astype(np.uint8)
            segments.append(_rle_segment(plane))
    offsets = np.cumsum([64] + [len(seg) for seg in segments[:-1]]).tolist()
    header = struct.pack("<16I", len(segments), *offsets, *([0] * (15 - len(segments))))
    return with_frame(ds, header + b"".join(segments), RLELossless)


def liar_cases() -> list[Case]:
    limit = r"claims \d+x\d+ pixels, larger than the limit"
    header = r"claims \d+x\d+ pixels, the DICOM header Rows x Columns 256x192"
    return [
        Case("jpeg_sof_65535.dcm", jpeg_sof_lie(), "liar", limit),
        Case("jpeg_sof_300x200.dcm", jpeg_sof_lie(300, 200), "liar", header),
        Case("jpeg_precision_16.dcm", _jpeg_precision_lie(), "liar", r"16-bit samples"),
        Case("jpegls_sof_60000.dcm", jpegls_sof_lie(), "liar", limit),
        Case("jpegls_lse_60000.dcm", _jpegls_lse_lie(), "liar", r"frame headers disagree"),
        Case("j2k_siz_40000.dcm", j2k_siz_lie(), "liar", limit),
        Case("j2k_siz_512x384.dcm", j2k_siz_lie(512, 384), "liar", header),
        Case("jp2_siz_40000.dcm", j2k_siz_lie(jp2=True), "liar", r"JP2 image header says"),
        Case("rle_15_segments.dcm", rle_segment_lie(count=15), "liar", r"15 segments, the DICOM"),
        Case(
            "rle_offset_beyond.dcm",
            rle_segment_lie(beyond=True),
            "liar",
            r"offset 2147483632 .*beyond",
        ),
        Case("rle_rgb32.dcm", rle_rgb32(), "liar", r"3 samples of 32 bits"),
    ]


def all_cases() -> list[Case]:
    return (
        lut_cases() + bomb_cases() + damage_cases() + foreign_cases() + noisy_cases() + liar_cases()
    )


def readable_age_junk() -> bytes:
    """A good mammogram whose PatientAge holds the planted identifier (read, age None)."""
    ds = good_dicom()
    _set_raw(ds, "PatientAge", "AS", f"{PLANTED}Y")
    return dicom_bytes(ds)
