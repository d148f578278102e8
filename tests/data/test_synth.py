from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hdcnn.data.synth import (
    LesionSpec,
    SynthConfig,
    cohort_labels,
    generate_patient,
    power_law_noise,
    render_view,
)
from hdcnn.terms import Label

SMALL = SynthConfig(height=192)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_power_law_noise_is_normalised_and_smooth() -> None:
    rough = power_law_noise((64, 64), 0.0, _rng())
    smooth = power_law_noise((64, 64), 3.0, _rng())
    for field in (rough, smooth):
        assert field.dtype == np.float32
        assert abs(float(field.mean())) < 1e-4
        assert float(field.std()) == pytest.approx(1.0, rel=1e-3)

    # neighbouring pixels are strongly correlated for beta=3, not for white noise
    def corr(f: np.ndarray) -> float:
        return float(np.corrcoef(f[:, :-1].ravel(), f[:, 1:].ravel())[0, 1])

    assert corr(smooth) > 0.8
    assert abs(corr(rough)) < 0.2


@pytest.mark.parametrize("n", [1, 2, 4, 8, 25])
def test_cohort_labels_mix(n: int) -> None:
    labels = cohort_labels(n, seed=1)
    assert len(labels) == n
    assert labels == cohort_labels(n, seed=1)
    n_mal = labels.count(Label.MALIGNANT)
    n_ben = labels.count(Label.BENIGN)
    assert n_mal == int(n * 0.25 + 0.5)
    assert n_ben == min(n - n_mal, int(n * 0.25 + 0.5))
    assert labels.count(Label.NORMAL) == n - n_mal - n_ben


@pytest.mark.parametrize("view", ["CC", "MLO"])
def test_breast_placement_by_laterality(view: str) -> None:
    w = SMALL.width
    for lat in ("L", "R"):
        img = render_view(lat, view, density="B", lesions=[], rng=_rng(3), config=SMALL)
        assert img.pixels.dtype == np.uint16 and img.pixels.shape == (SMALL.height, w)
        left = img.pixels[:, : w // 4].mean()
        right = img.pixels[:, -w // 4 :].mean()
        if lat == "L":  # chest wall against the left edge
            assert left > 3 * right
        else:
            assert right > 3 * left
        assert img.pixels[img.breast_mask].mean() > 5 * img.pixels[~img.breast_mask].mean()


def test_mlo_has_bright_pectoral_corner() -> None:
    h, w = SMALL.height, SMALL.width
    mlo = render_view("L", "MLO", density="A", lesions=[], rng=_rng(5), config=SMALL)
    cc = render_view("L", "CC", density="A", lesions=[], rng=_rng(5), config=SMALL)
    corner = (slice(0, h // 10), slice(0, w // 10))
    assert mlo.pixels[corner].mean() > 0.6 * 65535
    assert mlo.pixels[corner].mean() > 2 * cc.pixels[corner].mean()


def test_density_increases_bright_tissue() -> None:
    means = []
    for density in "AD":
        img = render_view("R", "CC", density=density, lesions=[], rng=_rng(7), config=SMALL)
        means.append(img.pixels[img.breast_mask].mean())
    assert means[1] > means[0] * 1.15


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        (Label.BENIGN, "mass"),
        (Label.MALIGNANT, "mass"),
        (Label.BENIGN, "calcification"),
        (Label.MALIGNANT, "calcification"),
    ],
)
@pytest.mark.parametrize("lat", ["L", "R"])
def test_lesion_lies_inside_its_box(label: Label, kind: str, lat: str) -> None:
    size = 18.0 if kind == "mass" else 10.0
    spec = LesionSpec(label=label, kind=kind, size_mm=size, depth=0.45, shape_seed=11)
    plain = render_view(lat, "CC", density="B", lesions=[], rng=_rng(9), config=SMALL)
    with_lesion = render_view(lat, "CC", density="B", lesions=[spec], rng=_rng(9), config=SMALL)
    assert plain.label == Label.NORMAL and with_lesion.label == label
    (lesion,) = with_lesion.lesions
    x1, y1, x2, y2 = lesion.box
    assert 0 <= x1 < x2 <= SMALL.width and 0 <= y1 < y2 <= SMALL.height
    rows, cols = np.nonzero(lesion.mask)
    assert cols.min() >= x1 and cols.max() < x2 and rows.min() >= y1 and rows.max() < y2
    # the lesion is drawn brighter, and only inside (or within 2 px of) its box
    diff = with_lesion.pixels.astype(np.int64) - plain.pixels.astype(np.int64)
    assert diff[lesion.mask].mean() > 0.05 * 65535
    # spicules of a malignant mass reach up to 2.4 radii beyond the body
    m = 2 if (kind, label) != ("mass", Label.MALIGNANT) else round(0.8 * max(x2 - x1, y2 - y1))
    outside = np.ones_like(lesion.mask)
    outside[max(0, int(y1) - m) : int(y2) + m, max(0, int(x1) - m) : int(x2) + m] = False
    assert np.abs(diff[outside]).max() < 0.02 * 65535
    assert with_lesion.breast_mask[lesion.mask].all()


def test_patient_is_deterministic_and_lesion_on_both_views() -> None:
    a = generate_patient(3, Label.MALIGNANT, seed=42, config=SMALL)
    b = generate_patient(3, Label.MALIGNANT, seed=42, config=SMALL)
    c = generate_patient(3, Label.MALIGNANT, seed=43, config=SMALL)
    assert a.patient_id == "SYN00004"
    assert 40 <= a.age <= 75 and a.density in "ABCD"
    assert [(i.laterality, i.view) for i in a.images] == [
        ("L", "CC"),
        ("L", "MLO"),
        ("R", "CC"),
        ("R", "MLO"),
    ]
    for x, y in zip(a.images, b.images, strict=True):
        np.testing.assert_array_equal(x.pixels, y.pixels)
    assert a.study_uid == b.study_uid != c.study_uid
    assert not np.array_equal(a.images[0].pixels, c.images[0].pixels)
    for img in a.images:
        expected = 1 if img.laterality == a.lesion_side else 0
        assert len(img.lesions) == expected
        assert img.label == (Label.MALIGNANT if expected else Label.NORMAL)


def test_normal_patient_has_no_lesions() -> None:
    p = generate_patient(0, Label.NORMAL, seed=1, config=SMALL)
    assert p.lesion_side is None
    assert all(not img.lesions for img in p.images)


# ------------------------------------------------------------------ files on disk (needs reader)


def _ring_contrast(pixels: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Mean inside the box minus mean of a ring of half the box size around it."""
    x1, y1, x2, y2 = (round(v) for v in box)
    pad = max(3, (max(x2 - x1, y2 - y1)) // 2)
    h, w = pixels.shape
    outer = pixels[max(0, y1 - pad) : min(h, y2 + pad), max(0, x1 - pad) : min(w, x2 + pad)]
    inner = pixels[y1:y2, x1:x2]
    ring_sum = outer.sum() - inner.sum()
    ring_n = outer.size - inner.size
    return float(inner.mean() - ring_sum / ring_n)


def _specks_ratio(pixels: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Brightest small speck (white top-hat) inside the box / brightest in a 10-px ring."""
    tophat = pixels - cv2.morphologyEx(pixels, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    x1, y1, x2, y2 = (round(v) for v in box)
    pad = 10
    h, w = pixels.shape
    ring = tophat[max(0, y1 - pad) : min(h, y2 + pad), max(0, x1 - pad) : min(w, x2 + pad)].copy()
    ring[
        y1 - max(0, y1 - pad) : y2 - max(0, y1 - pad), x1 - max(0, x1 - pad) : x2 - max(0, x1 - pad)
    ] = 0
    return float(tophat[y1:y2, x1:x2].max() / max(ring.max(), 1e-3))


def _assert_visible(pixels: np.ndarray, lesion: object) -> None:
    """The drawn lesion stands out where its box says: masses by mean, specks by top-hat."""
    if lesion.kind == "calcification":
        assert _specks_ratio(pixels, lesion.box) > 2.0
    else:
        assert _ring_contrast(pixels, lesion.box) > 0.03


def test_write_cohort_reads_back(tmp_path: Path) -> None:
    reader = pytest.importorskip("hdcnn.reader")
    manifest_mod = pytest.importorskip("hdcnn.data.manifest")
    from hdcnn.data.synth import write_cohort

    manifest = write_cohort(tmp_path / "a", patients=4, seed=5, size=192, png=True)
    assert len(manifest.records) == 16
    loaded = manifest_mod.Manifest.load_csv(tmp_path / "a" / "manifest.csv")
    assert len(loaded.records) == 16
    assert "SYNTHETIC" in (tmp_path / "a" / "README.txt").read_text()
    n_boxes = 0
    for rec in loaded.records:
        assert not Path(rec.image_path).is_absolute()
        path = tmp_path / "a" / rec.image_path
        mg = reader.read_mammogram(path)
        assert mg.meta.laterality == rec.laterality
        assert mg.meta.view == rec.view
        assert mg.meta.age == pytest.approx(rec.age)
        assert mg.meta.pixel_spacing is not None
        assert mg.pixels.shape == (192, round(192 * 13 / 16))
        assert (tmp_path / "a" / "png" / rec.patient_id / (path.stem + ".png")).is_file()
        for les in rec.lesions:
            n_boxes += 1
            _assert_visible(mg.pixels, les)
    assert n_boxes >= 2

    import pydicom

    ds = pydicom.dcmread(tmp_path / "a" / loaded.records[0].image_path)
    assert "SYNTHETIC" in str(ds.SeriesDescription)
    assert ds.BurnedInAnnotation == "NO"
    assert str(ds.PatientID).startswith("SYN")

    # same seed -> same bytes
    write_cohort(tmp_path / "b", patients=4, seed=5, size=192)
    for rec in loaded.records:
        assert (tmp_path / "a" / rec.image_path).read_bytes() == (
            tmp_path / "b" / rec.image_path
        ).read_bytes()


def test_cli_25_patients(tmp_path: Path) -> None:
    reader = pytest.importorskip("hdcnn.reader")
    pytest.importorskip("hdcnn.data.manifest")
    from hdcnn.commands import synth as synth_command
    from hdcnn.data.manifest import Manifest

    # only this command's parser: the CLI test of the whole dispatcher lives elsewhere
    parser = argparse.ArgumentParser()
    synth_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["synth", "--out", str(tmp_path / "s"), "--patients", "25", "--seed", "1"]
    )
    start = time.perf_counter()
    assert args.func(args) == 0
    elapsed = time.perf_counter() - start
    files = sorted((tmp_path / "s").rglob("*.dcm"))
    assert len(files) == 100
    manifest = Manifest.load_csv(tmp_path / "s" / "manifest.csv")
    assert len(manifest.records) == 100
    labels = {str(r.label) for r in manifest.records}
    assert labels == {"normal", "benign", "malignant"}
    for rec in manifest.records[::7]:
        mg = reader.read_mammogram(tmp_path / "s" / rec.image_path)
        assert (mg.meta.laterality, mg.meta.view) == (rec.laterality, rec.view)
        assert mg.meta.age == pytest.approx(rec.age)
    for rec in manifest.records:
        if rec.lesions:
            mg = reader.read_mammogram(tmp_path / "s" / rec.image_path)
            for les in rec.lesions:
                _assert_visible(mg.pixels, les)
    assert elapsed < 60
