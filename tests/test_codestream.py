"""Tests for hdcnn.codestream: the size written inside compressed streams, parsed undecoded."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from dicom_factory import phantom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.pixels import get_encoder
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

from hdcnn.codestream import MAX_J2K_TILES, check_frame, j2k_frame, jpeg_frame, rle_frame
from hdcnn.errors import MammogramError


def _jpeg(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", arr)
    assert ok
    return buf.tobytes()


def _encode(tsyntax: str, arr: np.ndarray) -> bytes:
    return get_encoder(tsyntax).encode(
        arr,
        rows=arr.shape[0],
        columns=arr.shape[1],
        samples_per_pixel=1,
        bits_allocated=16,
        bits_stored=12,
        pixel_representation=0,
        photometric_interpretation="MONOCHROME2",
        number_of_frames=1,
    )


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def _sof(marker: int, rows: int, cols: int, comps: int = 1, precision: int = 8) -> bytes:
    specs = b"".join(bytes([k + 1, 0x11, 0]) for k in range(comps))
    return _segment(marker, struct.pack(">BHHB", precision, rows, cols, comps) + specs)


def _check(frame: bytes, tsyntax: str, **kwargs: int) -> None:
    args = {"rows": 64, "columns": 48, "samples": 1, "bits_allocated": 8}
    args.update(kwargs)
    check_frame(frame, tsyntax, max_pixels=80_000_000, source="f.dcm", **args)  # type: ignore[arg-type]


def test_jpeg_frame_of_real_grey_and_colour_streams() -> None:
    grey = jpeg_frame(_jpeg(phantom(64, 48, bits=8)), "a.jpg")
    assert (grey.codec, grey.rows, grey.columns, grey.components, grey.precision) == (
        "JPEG", 64, 48, 1, 8,
    )  # fmt: skip
    colour = jpeg_frame(_jpeg(np.dstack([phantom(64, 48, bits=8)] * 3)), "b.jpg")
    assert (colour.rows, colour.columns, colour.components) == (64, 48, 3)


def test_every_frame_header_counts_also_after_the_first_scan() -> None:
    jpg = _jpeg(phantom(64, 48, bits=8))
    eoi = jpg.rindex(b"\xff\xd9")
    second = jpg[:eoi] + _sof(0xC2, 60000, 60000) + jpg[eoi:]
    with pytest.raises(MammogramError, match="frame headers disagree"):
        jpeg_frame(second, "two.jpg")
    dhp = jpg[:2] + _segment(0xDE, struct.pack(">BHHB", 8, 9000, 9000, 1) + b"\x01\x11\x00")
    with pytest.raises(MammogramError, match="frame headers disagree"):
        jpeg_frame(dhp + jpg[2:], "dhp.jpg")


def test_marker_bytes_inside_a_segment_or_after_eoi_are_not_frame_headers() -> None:
    jpg = _jpeg(phantom(64, 48, bits=8))
    app = _segment(0xE1, _sof(0xC0, 65535, 65535))  # an APP1 payload holding SOF-like bytes
    header = jpeg_frame(jpg[:2] + app + jpg[2:] + _sof(0xC0, 65535, 65535), "app.jpg")
    assert (header.rows, header.columns) == (64, 48)


@pytest.mark.parametrize(
    ("stream", "problem"),
    [
        (b"\x00\x00" + b"\x00" * 10, "does not start with SOI"),
        (b"\xff\xd8" + _sof(0xC0, 0, 48) + b"\xff\xd9", r"0x48 pixels"),
        (b"\xff\xd8\xff\xc0\x00\x40\x08", "runs past the end"),
        (b"\xff\xd8" + _segment(0xDB, b"\x00" * 65) + b"\xff\xd9", "no frame header"),
        (b"\xff\xd8" + _sof(0xC3, 64, 48) + b"\xff\xd8", "second SOI"),
    ],
)
def test_malformed_jpeg_streams_are_refused(stream: bytes, problem: str) -> None:
    with pytest.raises(MammogramError, match=problem) as info:
        jpeg_frame(stream, "bad.dcm")
    assert info.value.source == "bad.dcm"


def test_check_frame_compares_size_components_and_precision_with_the_header() -> None:
    frame = b"\xff\xd8" + _sof(0xC3, 64, 48, precision=16) + b"\xff\xd9"  # lossless, 16-bit
    _check(frame, "1.2.840.10008.1.2.4.70", bits_allocated=16)
    with pytest.raises(MammogramError, match="16-bit samples, the DICOM header BitsAllocated 8"):
        _check(frame, "1.2.840.10008.1.2.4.70")
    with pytest.raises(MammogramError, match=r"64x48 pixels, the DICOM header .* 64x50"):
        _check(frame, "1.2.840.10008.1.2.4.70", columns=50, bits_allocated=16)
    rgb = b"\xff\xd8" + _sof(0xC0, 64, 48, comps=3) + b"\xff\xd9"
    with pytest.raises(MammogramError, match="3 components, the DICOM header SamplesPerPixel 1"):
        _check(rgb, JPEGBaseline8Bit)
    with pytest.raises(MammogramError, match="no size check"):
        _check(rgb, "1.2.840.10008.1.2.4.100")  # MPEG-2: no known stream layout


def test_jpeg_ls_sof55_and_lse_dimensions() -> None:
    arr = phantom(64, 48)
    frame = _encode(JPEGLSLossless, arr)
    header = jpeg_frame(frame, "ls.dcm")
    assert (header.codec, header.rows, header.columns, header.precision) == ("JPEG-LS", 64, 48, 12)
    _check(frame, JPEGLSLossless, bits_allocated=16)
    sos = frame.index(b"\xff\xda")
    lse = _segment(0xF8, struct.pack(">BB", 4, 2) + struct.pack(">HH", 64, 48))
    assert jpeg_frame(frame[:sos] + lse + frame[sos:], "ls.dcm").rows == 64  # agrees: fine


def test_j2k_siz_of_a_real_codestream_and_of_a_jp2_file() -> None:
    code = _encode(JPEG2000Lossless, phantom(64, 48))
    header = j2k_frame(code, "j.dcm")
    assert (header.codec, header.rows, header.columns, header.components) == (
        "JPEG 2000", 64, 48, 1,
    )  # fmt: skip
    assert header.precision == 12
    _check(code, JPEG2000Lossless, bits_allocated=16)

    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body

    jp2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
    ihdr = box(b"jp2h", box(b"ihdr", struct.pack(">IIHBBBB", 64, 48, 1, 11, 7, 0, 0)))
    assert j2k_frame(jp2 + ihdr + box(b"jp2c", code), "j.jp2").rows == 64
    with pytest.raises(MammogramError, match="without a codestream"):
        j2k_frame(jp2 + ihdr, "j.jp2")
    with pytest.raises(MammogramError, match="runs past its end"):
        j2k_frame(jp2 + struct.pack(">I", 4000) + b"jp2c" + code, "j.jp2")
    with pytest.raises(MammogramError, match="not a JPEG 2000 codestream"):
        j2k_frame(b"\x00" * 64, "j.dcm")


def test_j2k_tile_grid_is_bounded() -> None:
    code = bytearray(_encode(JPEG2000Lossless, phantom(512, 512)))
    siz = code.index(b"\xff\x51")
    code[siz + 22 : siz + 30] = struct.pack(">II", 1, 1)  # XTsiz = YTsiz = 1: 262144 tiles
    with pytest.raises(MammogramError, match=f"262144 tiles .at most {MAX_J2K_TILES}"):
        j2k_frame(bytes(code), "tiles.dcm")


def test_rle_segment_header() -> None:
    frame = _encode(RLELossless, phantom(64, 48))
    assert rle_frame(frame, "r.dcm", segments=2).components == 2
    _check(frame, RLELossless, bits_allocated=16)
    with pytest.raises(MammogramError, match="2 segments, the DICOM header needs 1"):
        _check(frame, RLELossless, bits_allocated=8)
    for header, problem in (
        (struct.pack("<16I", 0, *([0] * 15)), "0 segments"),
        (struct.pack("<16I", 16, *([64] * 15)), "16 segments"),
        (struct.pack("<16I", 2, 60, 100, *([0] * 13)), "first segment at offset 60"),
        (struct.pack("<16I", 2, 64, 64, *([0] * 13)), "offset 64 out of order"),
    ):
        with pytest.raises(MammogramError, match=problem):
            rle_frame(header + frame[64:], "r.dcm")
    with pytest.raises(MammogramError, match="no 64-byte header"):
        rle_frame(frame[:10], "r.dcm")


_SEEDS = {
    "JPEG": _jpeg(phantom(64, 48, bits=8)),
    "JPEG-LS": _encode(JPEGLSLossless, phantom(64, 48)),
    "JPEG 2000": _encode(JPEG2000Lossless, phantom(64, 48)),
    "RLE": _encode(RLELossless, phantom(64, 48)),
}
_SYNTAX = {"JPEG": JPEGBaseline8Bit, "JPEG-LS": JPEGLSLossless, "JPEG 2000": JPEG2000Lossless,
           "RLE": RLELossless}  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    codec=st.sampled_from(sorted(_SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=6)), max_size=4),
    cut=st.integers(0, 4000),
)
def test_mutated_streams_give_a_header_or_a_mammogram_error(codec, edits, cut) -> None:
    data = bytearray(_SEEDS[codec])
    for at, value in edits:  # overwrite bytes in the headers, where the sizes live
        data[at : at + len(value)] = value
    data = data[: len(data) - cut] if cut < len(data) else data
    try:
        header = check_frame(
            bytes(data),
            _SYNTAX[codec],
            rows=64,
            columns=48,
            samples=1,
            bits_allocated=16,
            max_pixels=80_000_000,
            source="fuzz.dcm",
        )
    except MammogramError as exc:
        assert exc.source == "fuzz.dcm"
    else:
        assert codec == "RLE" or (header.rows, header.columns) == (64, 48)
