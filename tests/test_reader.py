"""Tests for hdcnn.reader.read_mammogram: real CBIS-DDSM and mini-MIAS files, synthetic DICOM
variants (photometric, VOI, rescale, compression, metadata), raster formats and bad inputs."""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from dicom_factory import make_dicom, phantom, write
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from hdcnn import read_mammogram
from hdcnn.errors import MammogramError
from hdcnn.reader import MAX_PIXELS, Mammogram, conventions_from_names


def min_max(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return (a - a.min()) / (a.max() - a.min())


def assert_image(m: Mammogram, shape: tuple[int, int]) -> None:
    assert isinstance(m, Mammogram)
    assert m.pixels.dtype == np.float32
    assert m.pixels.shape == shape == m.meta.original_size
    assert float(m.pixels.min()) >= 0.0 and float(m.pixels.max()) <= 1.0


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def cbis_read(cbis_cases):
    """All 8 real CBIS-DDSM images read once: list of (key, path, Mammogram)."""
    return [(key, path, read_mammogram(path)) for case in cbis_cases for key, path in case.items()]


def test_cbis_ddsm_real_dicoms(cbis_read):
    assert len(cbis_read) == 8
    for key, path, m in cbis_read:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        assert_image(m, (int(header.Rows), int(header.Columns)))
        assert m.meta.format == "dicom"
        assert m.meta.bit_depth == 16
        assert m.meta.laterality == key[0].upper(), path
        assert m.meta.view == key[1:].upper(), path
        assert m.meta.photometric == "MONOCHROME2"
        assert m.meta.source == Path(path).name
        # de-identified: 16 hex digits, not the plain (recomputable) sha256 of the UID
        assert re.fullmatch(r"[0-9a-f]{16}", m.meta.study_key)
        assert (
            m.meta.study_key
            != hashlib.sha256(str(header.StudyInstanceUID).encode()).hexdigest()[:16]
        )
        assert float(m.pixels.min()) == 0.0 and float(m.pixels.max()) == 1.0
        # nothing identifying leaks into the metadata
        assert str(header.PatientName) not in repr(m.meta)


def test_cbis_conventions_without_tags(cbis_cases, tmp_path):
    """CBIS-DDSM laterality also follows from PatientName when the tags are absent."""
    ds = pydicom.dcmread(cbis_cases[0]["lmlo"])
    small = make_dicom(patient_id=str(ds.PatientName))
    small.PatientOrientation = ds.PatientOrientation  # 'MLO' as CBIS writes it
    small.ViewCodeSequence = []
    m = read_mammogram(write(tmp_path, "1-131.dcm", small))
    assert (m.meta.laterality, m.meta.view) == ("L", "MLO")
    assert "P_0" not in repr(m.meta)


def test_mini_mias_pgm(mias_root):
    for name in ("mdb003.pgm", "mdb010.pgm", "mdb028.pgm"):
        path = mias_root / name
        if not path.exists():
            continue
        m = read_mammogram(path)
        assert_image(m, (1024, 1024))
        assert (m.meta.format, m.meta.bit_depth, m.meta.source) == ("pgm", 8, name)
        expected = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        np.testing.assert_allclose(m.pixels, min_max(expected), atol=1e-6)


# ----------------------------------------------------------------------------- DICOM pixels


def test_monochrome1_is_inverted(tmp_path):
    stored = phantom()
    m2 = read_mammogram(write(tmp_path, "m2.dcm", make_dicom(stored)))
    m1 = read_mammogram(write(tmp_path, "m1.dcm", make_dicom(stored, photometric="MONOCHROME1")))
    np.testing.assert_allclose(m2.pixels, min_max(stored), atol=1e-6)
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    assert m1.meta.photometric == "MONOCHROME1"


def _window_linear(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window, output in [0, 1]."""
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)


def test_window_center_width(tmp_path):
    stored = phantom()
    ds = make_dicom(stored, extra={"WindowCenter": 1500, "WindowWidth": 2000})
    m = read_mammogram(write(tmp_path, "w.dcm", ds))
    np.testing.assert_allclose(
        m.pixels, _window_linear(stored.astype(float), 1500, 2000), atol=1e-5
    )


def test_window_multi_valued_uses_first_pair(tmp_path):
    stored = phantom()
    ds = make_dicom(stored, extra={"WindowCenter": [800, 3000], "WindowWidth": [1000, 200]})
    m = read_mammogram(write(tmp_path, "wm.dcm", ds))
    np.testing.assert_allclose(m.pixels, _window_linear(stored.astype(float), 800, 1000), atol=1e-5)


def test_window_sigmoid(tmp_path):
    stored = phantom()
    extra = {"WindowCenter": 1200, "WindowWidth": 1600, "VOILUTFunction": "SIGMOID"}
    m = read_mammogram(write(tmp_path, "s.dcm", make_dicom(stored, extra=extra)))
    expected = 1.0 / (1.0 + np.exp(-4.0 * (stored.astype(float) - 1200) / 1600))
    np.testing.assert_allclose(m.pixels, expected, atol=1e-5)


def test_window_with_monochrome1(tmp_path):
    stored = phantom()
    extra = {"WindowCenter": 1500, "WindowWidth": 2000}
    ds = make_dicom(stored, photometric="MONOCHROME1", extra=extra)
    m = read_mammogram(write(tmp_path, "w1.dcm", ds))
    expected = 1.0 - _window_linear(stored.astype(float), 1500, 2000)
    np.testing.assert_allclose(m.pixels, expected, atol=1e-5)


def test_voi_lut_sequence(tmp_path):
    stored = phantom()  # 12-bit values
    lut = np.round(np.sqrt(np.arange(4096) / 4095) * 1000).astype(np.uint16) + 50
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = lut.tolist()
    item["LUTData"].VR = "US"
    # the VOI LUT wins over a window that would give a different image
    ds = make_dicom(stored, extra={"WindowCenter": 10, "WindowWidth": 20})
    ds.VOILUTSequence = [item]
    m = read_mammogram(write(tmp_path, "lut.dcm", ds))
    expected = (lut[stored].astype(float) - lut.min()) / (lut.max() - lut.min())
    np.testing.assert_allclose(m.pixels, expected, atol=1e-6)


def test_modality_rescale_then_window(tmp_path):
    stored = phantom()
    extra = {"RescaleSlope": 2, "RescaleIntercept": -100, "WindowCenter": 3000, "WindowWidth": 4000}
    m = read_mammogram(write(tmp_path, "r.dcm", make_dicom(stored, extra=extra)))
    values = stored.astype(float) * 2 - 100
    np.testing.assert_allclose(m.pixels, _window_linear(values, 3000, 4000), atol=1e-5)


def test_modality_rescale_without_window_is_min_max(tmp_path):
    stored = phantom()
    extra = {"RescaleSlope": -1, "RescaleIntercept": 4095}  # rescale inverts
    m = read_mammogram(write(tmp_path, "ri.dcm", make_dicom(stored, extra=extra)))
    np.testing.assert_allclose(m.pixels, 1.0 - min_max(stored), atol=1e-6)


def test_invalid_window_is_ignored(tmp_path):
    stored = phantom()
    ds = make_dicom(stored, extra={"WindowCenter": 100, "WindowWidth": 0})
    m = read_mammogram(write(tmp_path, "w0.dcm", ds))
    np.testing.assert_allclose(m.pixels, min_max(stored), atol=1e-6)


def _compressed(tsyntax: str) -> Dataset:
    if not get_encoder(tsyntax).is_available:
        pytest.skip(f"no encoder installed for {tsyntax}")
    ds = make_dicom(phantom(), laterality="R", view="CC")
    ds.compress(tsyntax)
    return ds


@pytest.mark.parametrize("tsyntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_compressed_transfer_syntaxes(tmp_path, tsyntax):
    ds = _compressed(tsyntax)
    path = write(tmp_path, "c.dcm", ds)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == tsyntax
    m = read_mammogram(path)
    np.testing.assert_allclose(m.pixels, min_max(phantom()), atol=1e-6)
    assert (m.meta.laterality, m.meta.view, m.meta.bit_depth) == ("R", "CC", 16)


def test_jpeg_baseline_dicom(tmp_path):
    stored = phantom(bits=8)
    ok, jpeg = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    ds = make_dicom(stored)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    m = read_mammogram(write(tmp_path, "jb.dcm", ds))
    np.testing.assert_allclose(m.pixels, min_max(stored), atol=0.03)


def test_colour_jpeg_baseline_dicom_is_read_as_its_luminance(tmp_path):
    """YBR_FULL_422: the Y channel is the luminance; pydicom's float RGB conversion (12 bytes
    a pixel) is not used, and the result is what RGB -> luminance gives."""
    grey = phantom(bits=8)
    other = np.flipud(grey) // 2 + 64  # channels that are not scaled copies of each other
    colour = np.dstack([grey // 2 + 32, other, grey[:, ::-1] // 2 + 96])  # B, G, R (OpenCV)
    ok, jpeg = cv2.imencode(".jpg", colour, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    ds = make_dicom(grey)
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    path = write(tmp_path, "ybr.dcm", ds)
    m = read_mammogram(path)
    rgb = pydicom.dcmread(path).pixel_array.astype(np.float64)  # pydicom's RGB conversion
    expected = min_max(rgb @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_allclose(m.pixels, expected, atol=2 / 255)
    assert m.meta.photometric == "YBR_FULL_422"


# ----------------------------------------------------------------------------- DICOM metadata


def test_dicom_metadata(tmp_path):
    ds = make_dicom(laterality="L", view="MLO", age_years=52, pixel_spacing=0.085)
    m = read_mammogram(write(tmp_path, "meta.dcm", ds))
    assert (m.meta.laterality, m.meta.view, m.meta.age) == ("L", "MLO", 52.0)
    assert m.meta.pixel_spacing == (0.085, 0.085)
    assert m.meta.presentation_intent == "FOR PRESENTATION"
    assert m.meta.study_key != hashlib.sha256(str(ds.StudyInstanceUID).encode()).hexdigest()[:16]
    assert (m.meta.bit_depth, m.meta.format, m.meta.source) == (16, "dicom", "meta.dcm")


def test_study_key_groups_views_within_a_process_but_is_salted(tmp_path):
    import subprocess
    import sys

    uid = "1.2.3.4.5.6.7"
    a = write(tmp_path, "a.dcm", make_dicom(study_uid=uid, laterality="L", view="CC"))
    b = write(tmp_path, "b.dcm", make_dicom(study_uid=uid, laterality="R", view="CC"))
    c = write(tmp_path, "c.dcm", make_dicom(study_uid=uid + ".8", laterality="R", view="CC"))
    key = read_mammogram(a).meta.study_key
    assert read_mammogram(b).meta.study_key == key  # same study, same process: same key
    assert read_mammogram(c).meta.study_key != key
    assert key != hashlib.sha256(uid.encode()).hexdigest()[:16]
    code = f"from hdcnn import read_mammogram; print(read_mammogram({str(a)!r}).meta.study_key)"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", other) and other != key  # not linkable across runs


@pytest.mark.parametrize(
    ("text", "years"), [("052Y", 52.0), ("006M", 0.5), ("026W", 26 * 7 / 365.25), ("", None)]
)
def test_patient_age_units(tmp_path, text, years):
    m = read_mammogram(write(tmp_path, "age.dcm", make_dicom(extra={"PatientAge": text})))
    assert m.meta.age == (pytest.approx(years) if years is not None else None)


def test_missing_laterality_and_view_are_none(tmp_path):
    m = read_mammogram(write(tmp_path, "image0001.dcm", make_dicom(patient_id="ANON")))
    assert (m.meta.laterality, m.meta.view) == (None, None)
    assert m.meta.pixel_spacing is None


def test_view_from_view_code_sequence_only(tmp_path):
    ds = make_dicom(view="CC")
    ds.ViewPosition = ""
    assert read_mammogram(write(tmp_path, "v.dcm", ds)).meta.view == "CC"
    ds.ViewCodeSequence[0].CodeValue = "R-10226"  # legacy SNOMED-RT code: by its meaning
    ds.ViewCodeSequence[0].CodeMeaning = "medio-lateral oblique"
    assert read_mammogram(write(tmp_path, "v2.dcm", ds)).meta.view == "MLO"
    ds.ViewCodeSequence[0].CodeValue = "399260004"
    ds.ViewCodeSequence[0].CodeMeaning = "medio-lateral"
    assert read_mammogram(write(tmp_path, "v3.dcm", ds)).meta.view == "other"


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (["A", "R"], "L"),
        (["P", "L"], "R"),
        (["A", "FR"], "L"),
        (["P", "FL"], "R"),
        (["A", "L"], None),
    ],
)
def test_laterality_from_patient_orientation(tmp_path, orientation, expected):
    ds = make_dicom()
    ds.PatientOrientation = orientation
    assert read_mammogram(write(tmp_path, "o.dcm", ds)).meta.laterality == expected


def test_imager_pixel_spacing_fallback(tmp_path):
    ds = make_dicom(extra={"ImagerPixelSpacing": [0.1, 0.05], "PresentationIntentType": ""})
    m = read_mammogram(write(tmp_path, "ips.dcm", ds))
    assert m.meta.pixel_spacing == (0.1, 0.05)
    assert m.meta.presentation_intent is None


def test_inbreast_and_other_name_conventions(tmp_path):
    ds = make_dicom()
    m = read_mammogram(write(tmp_path, "20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm", ds))
    assert (m.meta.laterality, m.meta.view) == ("R", "CC")
    assert conventions_from_names(["x.png", "Calc-Training_P_00005_LEFT_MLO"]) == ("L", "MLO")
    assert conventions_from_names(["patient7_LMLO.png"]) == ("L", "MLO")
    assert conventions_from_names(["L_and_R_CC.png"]) == (None, "CC")  # both sides: unknown
    assert conventions_from_names(["mdb001.pgm"]) == (None, None)


def test_bytes_input_with_name(tmp_path):
    path = write(tmp_path, "ignored.dcm", make_dicom(laterality="R", view="CC"))
    m = read_mammogram(path.read_bytes(), name="upload_1.dcm")
    assert m.meta.source == "upload_1.dcm"
    assert (m.meta.format, m.meta.laterality) == ("dicom", "R")
    assert read_mammogram(path.read_bytes()).meta.source == "upload"


def test_dicom_without_preamble(tmp_path):
    path = write(tmp_path, "p.dcm", make_dicom())
    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.preamble = None
    raw = tmp_path / "raw.dcm"
    ds.save_as(raw, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert raw.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_mammogram(raw).pixels, min_max(phantom()), atol=1e-6)


# ----------------------------------------------------------------------------- raster


def _encode(ext: str, arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, arr)
    assert ok
    return buf.tobytes()


def test_png_8_and_16_bit(tmp_path):
    for bits in (8, 16):
        arr = phantom(bits=bits)
        path = tmp_path / f"img{bits}.png"
        path.write_bytes(_encode(".png", arr))
        m = read_mammogram(path)
        assert_image(m, arr.shape)
        assert (m.meta.format, m.meta.bit_depth) == ("png", bits)
        np.testing.assert_allclose(m.pixels, min_max(arr), atol=1e-6)


def test_rgb_and_rgba_png_to_gray(tmp_path):
    gray = phantom(bits=8)
    bgr = np.dstack([gray] * 3)
    bgra = np.dstack([gray] * 3 + [np.full_like(gray, 128)])
    for name, arr, mode in (("rgb.png", bgr, "RGB"), ("rgba.png", bgra, "RGBA")):
        m = read_mammogram(_encode(".png", arr), name=name)
        assert m.meta.photometric == mode
        np.testing.assert_allclose(m.pixels, min_max(gray), atol=1e-5)
    # channel weights: pure red is darker than pure green
    colour = np.zeros((40, 40, 3), np.uint8)
    colour[:20, :, 2] = 255  # red (BGR order)
    colour[20:, :, 1] = 255  # green
    m = read_mammogram(_encode(".png", colour), name="rg.png")
    assert m.pixels[0, 0] < m.pixels[-1, -1]


def test_jpeg_and_tiff(tmp_path):
    arr8 = phantom(bits=8)
    m = read_mammogram(_encode(".jpg", arr8), name="a.jpg")
    assert (m.meta.format, m.meta.bit_depth) == ("jpeg", 8)
    np.testing.assert_allclose(m.pixels, min_max(arr8), atol=0.06)
    arr16 = phantom(bits=16)
    path = tmp_path / "a.tif"
    path.write_bytes(_encode(".tif", arr16))
    m = read_mammogram(path)
    assert (m.meta.format, m.meta.bit_depth) == ("tiff", 16)
    np.testing.assert_allclose(m.pixels, min_max(arr16), atol=1e-6)


def test_pgm_ascii_and_16_bit_binary(tmp_path):
    arr = phantom(40, 36, bits=8)
    text = "P2\n# made by a test\n36 40\n255\n" + "\n".join(
        " ".join(str(v) for v in row) for row in arr
    )
    path = tmp_path / "ascii.pgm"
    path.write_text(text)
    m = read_mammogram(path)
    assert (m.meta.format, m.meta.bit_depth) == ("pgm", 8)
    np.testing.assert_allclose(m.pixels, min_max(arr), atol=1e-6)
    arr16 = phantom(40, 36, bits=12)
    data = b"P5 36 40 4095\n" + arr16.astype(">u2").tobytes()
    m = read_mammogram(data, name="b.pgm")
    assert m.meta.bit_depth == 12
    np.testing.assert_allclose(m.pixels, min_max(arr16), atol=1e-6)


def test_format_from_content_not_extension(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_bytes(_encode(".png", phantom(bits=8)))
    assert read_mammogram(path).meta.format == "png"
    assert read_mammogram(_encode(".png", phantom(bits=8)), name="x.jpg").meta.format == "png"


def test_raster_name_conventions(tmp_path):
    path = tmp_path / "Mass-Training_P_00001_LEFT_CC" / "full.png"
    path.parent.mkdir()
    path.write_bytes(_encode(".png", phantom(bits=8)))
    assert (read_mammogram(path).meta.laterality, read_mammogram(path).meta.view) == ("L", "CC")


# ----------------------------------------------------------------------------- bad inputs


def _raises(source: object, pattern: str, *, name: str | None = None, shown: str) -> None:
    with pytest.raises(MammogramError, match=pattern) as info:
        read_mammogram(source, name=name)  # type: ignore[arg-type]
    assert shown in str(info.value)
    assert info.value.source.endswith(shown)


def test_missing_and_empty_files(tmp_path):
    _raises(tmp_path / "nope.dcm", "not found", shown="nope.dcm")
    (tmp_path / "empty.png").write_bytes(b"")
    _raises(tmp_path / "empty.png", "empty", shown="empty.png")
    _raises(b"", "empty", name="blank.dcm", shown="blank.dcm")
    _raises(tmp_path, "directory", shown=tmp_path.name)
    _raises(12345, "expected a file path", name="number", shown="number")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is a text file renamed to .dcm\n" * 20)
    _raises(path, "not a recognised image", shown="notes.dcm")
    rng = np.random.default_rng(1)
    _raises(rng.bytes(5000), "not a recognised image", name="random.bin", shown="random.bin")


def test_truncated_files(tmp_path):
    png = _encode(".png", phantom(bits=8))
    _raises(png[: len(png) // 2], "truncated", name="half.png", shown="half.png")
    _raises(png[:20], "truncated", name="tiny.png", shown="tiny.png")
    jpg = _encode(".jpg", phantom(bits=8))
    _raises(jpg[: len(jpg) // 2], "truncated", name="half.jpg", shown="half.jpg")
    _raises(b"P5 36 40 255\n" + bytes(100), "truncated", name="short.pgm", shown="short.pgm")
    dcm = write(tmp_path, "full.dcm", make_dicom()).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(dcm[: len(dcm) - 1000])
    _raises(path, "DICOM", shown="cut.dcm")
    path.write_bytes(dcm[:200])
    _raises(path, "DICOM", shown="cut.dcm")
    j2k = make_dicom()
    j2k.compress(JPEG2000Lossless)
    data = write(tmp_path, "j2k.dcm", j2k).read_bytes()
    _raises(data[: len(data) - 500], "truncated", name="j2k.dcm", shown="j2k.dcm")
    tif = _encode(".tif", phantom(bits=16))
    _raises(tif[: len(tif) // 2], "TIFF", name="half.tif", shown="half.tif")


def test_every_truncation_raises_mammogram_error(tmp_path):
    """No cut of a valid file may escape as anything but MammogramError."""
    rle = make_dicom()
    rle.compress(RLELossless)
    files = {
        "a.dcm": write(tmp_path, "a.dcm", make_dicom()).read_bytes(),
        "b.dcm": write(tmp_path, "b.dcm", rle).read_bytes(),
        "c.png": _encode(".png", phantom(bits=16)),
        "d.jpg": _encode(".jpg", phantom(bits=8)),
        "e.tif": _encode(".tif", phantom(bits=8)),
    }
    for name, data in files.items():
        for cut in np.linspace(1, len(data) - 1, 25).astype(int):
            try:
                read_mammogram(data[:cut], name=name)
            except MammogramError as exc:
                assert name in str(exc)


def test_dicom_without_pixel_data(tmp_path):
    ds = make_dicom()
    del ds.PixelData
    _raises(write(tmp_path, "nopix.dcm", ds), "no pixel data", shown="nopix.dcm")


def test_unsupported_transfer_syntax(tmp_path):
    ds = make_dicom()
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    path = tmp_path / "odd.dcm"
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
    _raises(path, "unsupported DICOM transfer syntax", shown="odd.dcm")


def test_multi_frame_dicom(tmp_path):
    frames = np.stack([phantom(), phantom(seed=1)])
    ds = make_dicom()
    ds.NumberOfFrames = 2
    ds.PixelData = frames.tobytes()
    _raises(write(tmp_path, "multi.dcm", ds), "multi-frame", shown="multi.dcm")


def test_huge_dicom_header_refused_before_decoding(tmp_path, monkeypatch):
    ds = make_dicom()
    ds.Rows, ds.Columns = 50000, 50000  # 2.5e9 pixels claimed, a few kB of data present
    path = write(tmp_path, "huge.dcm", ds)

    def fail(*args, **kwargs):
        raise AssertionError("decoder called")

    monkeypatch.setattr("hdcnn.dicom.decode_stored", fail)
    _raises(path, f"larger than the limit of {MAX_PIXELS}", shown="huge.dcm")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_huge_png_header_refused_before_decoding(monkeypatch):
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + _png_chunk(b"IEND", b"")
    )

    def fail(*args, **kwargs):
        raise AssertionError("decoder called")

    monkeypatch.setattr(cv2, "imdecode", fail)
    _raises(
        data, "100000x100000 pixels is larger than the limit", name="bomb.png", shown="bomb.png"
    )


def test_huge_jpeg_frame_header_refused_before_decoding(monkeypatch):
    jpg = bytearray(_encode(".jpg", phantom(64, 48, bits=8)))
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5 : sof + 9] = struct.pack(">HH", 65535, 65535)

    def fail(*args, **kwargs):
        raise AssertionError("decoder called")

    monkeypatch.setattr(cv2, "imdecode", fail)
    _raises(bytes(jpg), "65535x65535 pixels is larger than the limit", name="b.jpg", shown="b.jpg")


def test_lying_dicom_stream_refused_before_any_decoder(monkeypatch):
    """Issue 21: the frame header inside the JPEG says 65535 x 65535, the DICOM header 256 x 192."""
    from pydicom.pixels.decoders.base import Decoder

    from tests.hostile.hostile_corpus import jpeg_sof_lie

    def fail(*args, **kwargs):
        raise AssertionError("decoder called")

    monkeypatch.setattr(Decoder, "as_array", fail)
    _raises(
        jpeg_sof_lie(),
        "the JPEG stream claims 65535x65535 pixels, larger than the limit",
        name="sof.dcm",
        shown="sof.dcm",
    )


@pytest.mark.parametrize(("samples", "bits"), [(3, 16), (1, 32), (3, 32), (4, 8), (1, 1)])
def test_sample_layouts_no_mammogram_has_are_refused_from_the_header(tmp_path, samples, bits):
    ds = make_dicom(phantom(64, 48, bits=8))
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = samples, bits, bits, bits - 1
    ds.PhotometricInterpretation = "RGB" if samples > 1 else "MONOCHROME2"
    ds.PixelData = bytes(64 * 48 * samples * max(1, bits // 8))
    path = write(tmp_path, "layout.dcm", ds)
    _raises(
        path, f"{samples} samples of {bits} bits per pixel is not a mammogram", shown="layout.dcm"
    )


def test_max_pixels_argument():
    data = _encode(".png", phantom(64, 48, bits=8))
    with pytest.raises(MammogramError, match="larger than the limit of 1000"):
        read_mammogram(data, name="x.png", max_pixels=1000)


def test_too_small_and_constant_images(tmp_path):
    _raises(_encode(".png", phantom(20, 60, bits=8)), "too small", name="s.png", shown="s.png")
    ds = make_dicom(phantom(20, 60))
    _raises(write(tmp_path, "small.dcm", ds), "too small", shown="small.dcm")
    flat = np.full((64, 64), 77, np.uint8)
    _raises(_encode(".png", flat), "constant", name="flat.png", shown="flat.png")
    ds = make_dicom(np.full((64, 64), 300, np.uint16))
    _raises(write(tmp_path, "flat.dcm", ds), "constant", shown="flat.dcm")
    ds = make_dicom(extra={"WindowCenter": 100000, "WindowWidth": 10})  # all below: black
    _raises(write(tmp_path, "black.dcm", ds), "constant after", shown="black.dcm")


def test_error_message_format(tmp_path):
    path = tmp_path / "odd name (1).dcm"
    path.write_text("hello")
    with pytest.raises(MammogramError) as info:
        read_mammogram(path)
    assert re.match(rf"^{re.escape(str(path))}: ", str(info.value))


def test_rgb_dicom_to_gray(tmp_path):
    gray = phantom(bits=8)
    ds = make_dicom(gray)
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.dstack([gray] * 3).tobytes()
    m = read_mammogram(write(tmp_path, "rgb.dcm", ds))
    assert m.meta.photometric == "RGB"
    np.testing.assert_allclose(m.pixels, min_max(gray), atol=1e-5)


def test_palette_colour_dicom(tmp_path):
    index = phantom(bits=8)
    ramp = (np.arange(256, dtype=np.uint16) * 257).tolist()  # grey palette, 16-bit entries
    ds = make_dicom(index)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", np.array(ramp, "<u2").tobytes())
    m = read_mammogram(write(tmp_path, "pal.dcm", ds))
    np.testing.assert_allclose(m.pixels, min_max(index), atol=1e-5)
