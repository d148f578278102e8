"""Synthetic screening cohort: mammogram-like images with known lesions (NOT real patients).

The images exist to exercise every code path (reading, preprocessing, detection, the
hierarchical classifiers, the app) without patient data. They look roughly like mammograms:

- four views per patient (L/R x CC/MLO), 16-bit MONOCHROME2 (bright = dense tissue);
- **placement**: as in the CBIS-DDSM DICOMs and standard back-to-back display, the **left**
  breast lies against the **left** image edge (nipple pointing right) and the **right** breast
  against the **right** image edge; ``PatientOrientation`` is set to match (LCC ``A\\R``,
  RCC ``P\\L``, LMLO ``A\\FR``, RMLO ``P\\FL``);
- a half-elliptic breast outline against the chest wall with a skin line and fall-off of the
  compressed thickness toward the edge; on MLO views the pectoral muscle is a bright triangle in
  the upper chest-wall corner;
- tissue texture from power-law (1/f^beta) noise; BI-RADS density A-D sets the fraction of
  fibroglandular (bright) tissue;
- benign masses (round/oval, circumscribed), malignant masses (irregular, ill-defined,
  spiculated), calcification clusters (tiny bright specks: few coarse ones when benign, many
  fine pleomorphic ones when malignant);
- about 50 % normal, 25 % benign and 25 % malignant patients; an abnormal patient has one lesion
  in one breast, seen on both views (same depth from the nipple, size and shape family).

Everything is deterministic for a seed: the same seed gives the same bytes (UIDs are derived
from the seed). Ground-truth boxes are ``[x1, y1, x2, y2]`` original pixels, the bounding box of
the generator's lesion mask (x2/y2 exclusive edges).
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from hdcnn.terms import Label, View

logger = logging.getLogger(__name__)

#: Written into every synthetic DICOM (SeriesDescription) and the cohort README.
SYNTHETIC_NOTICE = "SYNTHETIC - not a real patient"
#: Physical height of the imaged field in mm; pixel spacing = FIELD_HEIGHT_MM / height.
FIELD_HEIGHT_MM = 240.0
#: Width / height ratio of the images (512 x 416 by default, like an 18 x 24 cm detector).
ASPECT = 13 / 16
#: BI-RADS density -> fraction of the breast that is fibroglandular tissue.
DENSITY_FRACTION: dict[str, float] = {"A": 0.12, "B": 0.35, "C": 0.6, "D": 0.82}
DENSITY_PROBS: tuple[float, ...] = (0.1, 0.4, 0.4, 0.1)
#: Fractions of malignant and benign patients; the rest are normal.
MALIGNANT_FRACTION = 0.25
BENIGN_FRACTION = 0.25
VIEWS: tuple[tuple[str, str], ...] = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


@dataclass(frozen=True)
class SynthConfig:
    """Image geometry of a synthetic cohort.

    Attributes:
        height: image rows (the long side); width is ``round(height * ASPECT)``.
    """

    height: int = 512

    @property
    def width(self) -> int:
        return round(self.height * ASPECT)

    @property
    def pixel_spacing(self) -> float:
        """Square pixel size in mm."""
        return FIELD_HEIGHT_MM / self.height


@dataclass(frozen=True)
class LesionSpec:
    """One lesion of a patient, shared by both views of its breast.

    Attributes:
        label: benign or malignant.
        kind: "mass" or "calcification".
        size_mm: mass diameter or calcification-cluster diameter in mm.
        depth: centre position from the chest wall as a fraction of the breast depth (0..1).
        shape_seed: seed of the shape details (same on both views).
    """

    label: Label
    kind: str
    size_mm: float
    depth: float
    shape_seed: int


@dataclass
class SynthLesion:
    """A lesion as drawn on one view.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float original pixels, bounding box of ``mask``.
        label: benign or malignant.
        kind: "mass" or "calcification".
        mask: bool ``(H, W)`` pixels the lesion changed visibly.
    """

    box: tuple[float, float, float, float]
    label: Label
    kind: str
    mask: np.ndarray


@dataclass
class SynthImage:
    """One rendered view.

    Attributes:
        pixels: uint16 ``(H, W)``, MONOCHROME2 (0 = air, bright = dense).
        laterality: "L" or "R".
        view: "CC" or "MLO".
        breast_mask: bool ``(H, W)`` breast (including the pectoral muscle on MLO).
        lesions: lesions drawn on this view (empty for a normal view).
    """

    pixels: np.ndarray
    laterality: str
    view: str
    breast_mask: np.ndarray
    lesions: list[SynthLesion] = field(default_factory=list)

    @property
    def label(self) -> Label:
        if any(les.label == Label.MALIGNANT for les in self.lesions):
            return Label.MALIGNANT
        if self.lesions:
            return Label.BENIGN
        return Label.NORMAL


@dataclass
class SynthPatient:
    """A synthetic patient: identifiers, age, density and four views."""

    patient_id: str
    study_uid: str
    age: int
    density: str
    label: Label
    lesion_side: str | None
    images: list[SynthImage]


# --------------------------------------------------------------------------- deterministic ids


def synthetic_uid(seed: int, *parts: object) -> str:
    """A DICOM UID (``2.25.<128-bit int>``) derived from ``seed`` and ``parts`` only."""
    digest = hashlib.sha256(f"hdcnn-synth|{seed}|{'|'.join(map(str, parts))}".encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16]).int}"


def patient_id_for(index: int) -> str:
    """``SYN00001`` for index 0."""
    return f"SYN{index + 1:05d}"


def cohort_labels(n_patients: int, seed: int) -> list[Label]:
    """Patient labels: exactly ``round(n * 0.25)`` malignant and benign, the rest normal, shuffled.

    Args:
        n_patients: number of patients (>= 0).
        seed: shuffling seed.

    Returns:
        One :class:`Label` per patient index.
    """
    n_mal = math.floor(n_patients * MALIGNANT_FRACTION + 0.5)
    n_ben = min(n_patients - n_mal, math.floor(n_patients * BENIGN_FRACTION + 0.5))
    labels = [Label.MALIGNANT] * n_mal + [Label.BENIGN] * n_ben
    labels += [Label.NORMAL] * (n_patients - len(labels))
    order = np.random.default_rng(np.random.SeedSequence([seed, 0xC0407])).permutation(n_patients)
    return [labels[i] for i in order]


# --------------------------------------------------------------------------- texture


def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field with power spectrum ``1 / f**beta`` (zero mean, unit std).

    Args:
        shape: ``(H, W)``.
        beta: spectral exponent (~3 for breast parenchyma, 0 = white noise).
        rng: random source.

    Returns:
        float32 ``(H, W)``.
    """
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amplitude = f ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    spectrum = amplitude * (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape))
    field_ = np.fft.irfft2(spectrum, s=(h, w))
    field_ -= field_.mean()
    std = field_.std()
    return (field_ / std if std > 0 else field_).astype(np.float32)


# --------------------------------------------------------------------------- one view


@dataclass(frozen=True)
class _Breast:
    """Breast outline in the canonical frame (chest wall at x = 0)."""

    cy: float  # vertical centre of the base (px)
    a: float  # depth from the chest wall to the nipple (px)
    b: float  # vertical half-extent at the chest wall (px)
    px: float  # exponent of the x term: 2 = ellipse, smaller = blunter
    pect_w: float  # pectoral triangle width at the top edge (0 on CC)
    pect_h: float  # pectoral triangle height along the chest wall (0 on CC)

    def radius(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Normalised radius: < 1 inside the breast."""
        return (np.clip(xx, 0, None) / self.a) ** self.px + ((yy - self.cy) / self.b) ** 2

    def pectoral(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Signed distance-like value, > 0 inside the pectoral triangle."""
        if self.pect_w <= 0:
            return np.full(xx.shape, -1.0, dtype=np.float32)
        return 1.0 - xx / self.pect_w - yy / self.pect_h


def _breast_for(view: str, h: int, w: int, rng: np.random.Generator) -> _Breast:
    if view == View.MLO:
        return _Breast(
            cy=h * rng.uniform(0.40, 0.48),
            a=w * rng.uniform(0.62, 0.78),
            b=h * rng.uniform(0.50, 0.58),
            px=rng.uniform(1.6, 2.0),
            pect_w=w * rng.uniform(0.25, 0.38),
            pect_h=h * rng.uniform(0.45, 0.65),
        )
    return _Breast(
        cy=h * rng.uniform(0.47, 0.53),
        a=w * rng.uniform(0.62, 0.82),
        b=h * rng.uniform(0.36, 0.44),
        px=rng.uniform(1.7, 2.2),
        pect_w=0.0,
        pect_h=0.0,
    )


def _lesion_centre(
    breast: _Breast, depth: float, rng: np.random.Generator, radius_px: float
) -> tuple[float, float]:
    """A centre at ``depth`` (fraction of breast depth) inside the breast, off the pectoral."""
    x = depth * breast.a
    half = breast.b * (1.0 - depth**breast.px) ** 0.5  # vertical half-extent at this depth
    for _ in range(50):
        y = breast.cy + rng.uniform(-0.6, 0.6) * max(half - radius_px, 1.0)
        # the lesion's corner nearest the pectoral muscle must stay clear of it
        if breast.pectoral(np.array(x - 1.5 * radius_px), np.array(y - 1.5 * radius_px)) < -0.1:
            return x, float(y)
    return x, breast.cy + 0.3 * half  # low on the breast: below any pectoral triangle


def _mass_intensity(
    xx: np.ndarray,
    yy: np.ndarray,
    centre: tuple[float, float],
    radius: float,
    malignant: bool,
    shape_rng: np.random.Generator,
    view_rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Additive intensity (0..1) of a mass: circumscribed oval or irregular spiculated.

    Returns:
        ``(intensity, body)``: float32 ``(H, W)`` maps; ``body`` is the mass without its
        spicules (the ground-truth box bounds the body, as CBIS-DDSM outlines do).
    """
    cx, cy = centre
    dx, dy = xx - cx, yy - cy
    theta = np.arctan2(dy, dx)
    rot = view_rng.uniform(0, np.pi)
    if malignant:
        boundary = np.ones_like(theta)
        for k in range(2, 8):
            amp = shape_rng.uniform(0.03, 0.12)
            boundary = boundary + amp * np.cos(k * (theta - rot) + shape_rng.uniform(0, 2 * np.pi))
        rho = np.hypot(dx, dy) / (radius * boundary)
        edge = 0.25  # ill-defined margin
    else:
        ratio = shape_rng.uniform(0.7, 1.0)
        c, s = np.cos(rot), np.sin(rot)
        u = (dx * c + dy * s) / radius
        v = (-dx * s + dy * c) / (radius * ratio)
        rho = np.hypot(u, v)
        edge = 0.08  # circumscribed
    body = np.clip((1.0 - rho) / edge, 0.0, 1.0)
    body = body * (0.7 + 0.3 * np.clip(1.0 - rho, 0, 1))  # slightly brighter centre
    if not malignant:
        body = body.astype(np.float32)
        return body, body

    spicules = np.zeros(xx.shape, dtype=np.float32)
    n_spic = int(shape_rng.integers(8, 16))
    for _ in range(n_spic):
        ang = shape_rng.uniform(0, 2 * np.pi) + rot
        length = radius * shape_rng.uniform(1.5, 2.4)
        x2, y2 = cx + length * np.cos(ang), cy + length * np.sin(ang)
        p1 = (round(cx * 16), round(cy * 16))
        p2 = (round(x2 * 16), round(y2 * 16))
        cv2.line(spicules, p1, p2, 0.55, thickness=1, lineType=cv2.LINE_AA, shift=4)
    spicules = cv2.GaussianBlur(spicules, (0, 0), 0.6)
    body = body.astype(np.float32)
    return np.maximum(body, spicules).astype(np.float32), body


def _calc_intensity(
    shape: tuple[int, int],
    centre: tuple[float, float],
    radius: float,
    malignant: bool,
    shape_rng: np.random.Generator,
    px_per_mm: float,
) -> np.ndarray:
    """Additive intensity of a calcification cluster (tiny bright Gaussian specks)."""
    h, w = shape
    out = np.zeros(shape, dtype=np.float32)
    n = int(shape_rng.integers(8, 20)) if malignant else int(shape_rng.integers(4, 8))
    sigma_mm = (0.25, 0.45) if malignant else (0.5, 0.8)
    for _ in range(n):
        r = radius * np.sqrt(shape_rng.uniform(0, 1))
        a = shape_rng.uniform(0, 2 * np.pi)
        sx, sy = centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)
        sigma = max(0.6, shape_rng.uniform(*sigma_mm) * px_per_mm)
        half = math.ceil(3 * sigma) + 1
        x0, x1 = max(0, math.floor(sx) - half), min(w, math.floor(sx) + half + 1)
        y0, y1 = max(0, math.floor(sy) - half), min(h, math.floor(sy) + half + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        gy, gx = np.mgrid[y0:y1, x0:x1]
        blob = np.exp(-((gx - sx) ** 2 + (gy - sy) ** 2) / (2 * sigma * sigma))
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], blob.astype(np.float32))
    return out


def render_view(
    laterality: str,
    view: str,
    *,
    density: str,
    lesions: list[LesionSpec],
    rng: np.random.Generator,
    config: SynthConfig = SynthConfig(),
) -> SynthImage:
    """Draw one synthetic mammogram.

    Args:
        laterality: "L" (breast against the left edge) or "R" (against the right edge).
        view: "CC" or "MLO" (MLO adds the pectoral muscle).
        density: BI-RADS density "A".."D".
        lesions: lesions of this breast (may be empty).
        rng: random source for this view (texture, outline, lesion placement).
        config: image size.

    Returns:
        :class:`SynthImage` with uint16 ``(H, W)`` pixels and the lesions' boxes and masks in
        original pixels.
    """
    if laterality not in ("L", "R") or view not in (View.CC, View.MLO):
        raise ValueError(f"laterality must be L/R and view CC/MLO, got {laterality!r}, {view!r}")
    h, w = config.height, config.width
    px_per_mm = 1.0 / config.pixel_spacing
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    breast = _breast_for(view, h, w, rng)

    r = breast.radius(xx, yy)
    inside = r < 1.0
    # compressed thickness: flat inside, falling off over the outer ~12 % toward the skin
    thickness = np.sqrt(np.clip((1.0 - r) / 0.12, 0.0, 1.0)).astype(np.float32)
    # fibroglandular tissue: coarse power-law texture, concentrated behind the nipple
    coarse = power_law_noise((h, w), 3.0, rng)
    central = np.exp(
        -(((xx / breast.a - 0.45) / 0.35) ** 2) - (((yy - breast.cy) / breast.b) / 0.55) ** 2
    )
    score = coarse + 1.2 * central
    frac = DENSITY_FRACTION[density]
    thr = float(np.quantile(score[inside], 1.0 - frac)) if inside.any() else 0.0
    gland = 1.0 / (1.0 + np.exp(-(score - thr) / 0.45))
    fine = power_law_noise((h, w), 2.0, rng)
    tissue = 0.26 + 0.32 * gland + 0.03 * fine
    skin = 0.10 * np.exp(-(((1.0 - r) / 0.012) ** 2)) * (r < 1.0)
    image = thickness * tissue + skin

    pect = breast.pectoral(xx, yy)
    pect_alpha = np.clip(pect / 0.05, 0.0, 1.0).astype(np.float32)
    image = image * (1 - pect_alpha) + pect_alpha * (0.70 + 0.03 * fine)
    breast_mask = inside | (pect_alpha > 0.5)

    # drawn before the lesions, so a view with and without lesions differs only at them
    quantum = rng.normal(0.0, 0.006, (h, w)).astype(np.float32)
    drawn: list[SynthLesion] = []
    for spec in lesions:
        shape_rng = np.random.default_rng(spec.shape_seed)
        radius = spec.size_mm * px_per_mm / 2.0
        centre = _lesion_centre(breast, spec.depth, rng, radius)
        malignant = spec.label == Label.MALIGNANT
        if spec.kind == "calcification":
            add = _calc_intensity((h, w), centre, radius, malignant, shape_rng, px_per_mm)
            core = add
            gain, visible = 0.40, 0.15
        else:
            add, core = _mass_intensity(xx, yy, centre, radius, malignant, shape_rng, rng)
            gain, visible = 0.28, 0.10
        add = add * inside
        image = image + gain * add * np.clip(thickness, 0.5, 1.0)
        mask = (core * inside) > visible  # spicules are drawn but lie outside the box
        if not mask.any():
            logger.warning("synthetic %s %s lesion fell outside the breast", laterality, view)
            continue
        rows, cols = np.nonzero(mask)
        box = (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
        drawn.append(SynthLesion(box=box, label=spec.label, kind=spec.kind, mask=mask))

    image = image * breast_mask + quantum
    pixels = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)

    if laterality == "R":  # canonical frame has the chest wall on the left: mirror
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        breast_mask = np.ascontiguousarray(breast_mask[:, ::-1])
        for les in drawn:
            x1, y1, x2, y2 = les.box
            les.box = (w - x2, y1, w - x1, y2)
            les.mask = np.ascontiguousarray(les.mask[:, ::-1])
    return SynthImage(pixels, laterality, str(view), breast_mask, drawn)


# --------------------------------------------------------------------------- one patient


def _lesion_spec(label: Label, rng: np.random.Generator) -> LesionSpec:
    malignant = label == Label.MALIGNANT
    if rng.uniform() < (0.3 if malignant else 0.25):
        kind, size = "calcification", rng.uniform(6.0, 14.0)
    else:
        kind, size = "mass", rng.uniform(12.0, 28.0) if malignant else rng.uniform(8.0, 22.0)
    return LesionSpec(
        label=label,
        kind=kind,
        size_mm=float(size),
        depth=float(rng.uniform(0.25, 0.65)),
        shape_seed=int(rng.integers(2**31)),
    )


def generate_patient(
    index: int, label: Label, *, seed: int, config: SynthConfig = SynthConfig()
) -> SynthPatient:
    """Render the four views of synthetic patient ``index``.

    Args:
        index: patient number (0-based); the id is ``SYN{index+1:05d}``.
        label: patient label (normal, benign or malignant); an abnormal patient gets one lesion
            in a random breast, drawn on both its views.
        seed: cohort seed; together with ``index`` it fixes every pixel.
        config: image size.

    Returns:
        :class:`SynthPatient` with images in the order LCC, LMLO, RCC, RMLO.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    age = round(_truncated_normal(rng, 57.0, 9.0, 40.0, 75.0))
    density = str(rng.choice(list(DENSITY_FRACTION), p=DENSITY_PROBS))
    side: str | None = None
    specs: list[LesionSpec] = []
    if label in (Label.BENIGN, Label.MALIGNANT):
        side = str(rng.choice(["L", "R"]))
        specs = [_lesion_spec(label, rng)]
    view_seeds = rng.spawn(len(VIEWS))
    images = [
        render_view(
            lat,
            view,
            density=density,
            lesions=specs if lat == side else [],
            rng=view_rng,
            config=config,
        )
        for (lat, view), view_rng in zip(VIEWS, view_seeds, strict=True)
    ]
    return SynthPatient(
        patient_id=patient_id_for(index),
        study_uid=synthetic_uid(seed, index, "study"),
        age=age,
        density=density,
        label=label,
        lesion_side=side,
        images=images,
    )


def _truncated_normal(
    rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float
) -> float:
    for _ in range(1000):
        x = rng.normal(mean, sd)
        if lo <= x <= hi:
            return float(x)
    return float(np.clip(mean, lo, hi))


# --------------------------------------------------------------------------- cohort on disk


def image_name(patient_id: str, laterality: str, view: str) -> str:
    """File stem of one view, e.g. ``SYN00001_L_CC``."""
    return f"{patient_id}_{laterality}_{view}"


def write_cohort(
    out_dir: str | Path,
    *,
    patients: int,
    seed: int = 0,
    size: int = 512,
    png: bool = False,
    progress: Callable[[int, int], None] | None = None,
):
    """Write a synthetic cohort: DICOMs, optional PNGs, ``manifest.csv`` and a README.

    Layout::

        out_dir/README.txt                      says the data are synthetic
        out_dir/manifest.csv                    hdcnn.data.manifest.Manifest, relative paths
        out_dir/dicom/SYN00001/SYN00001_L_CC.dcm
        out_dir/png/SYN00001/SYN00001_L_CC.png  (with png=True; 16-bit grey)

    Args:
        out_dir: output folder (created; existing files of the same names are replaced).
        patients: number of patients (>= 1); four images each.
        seed: cohort seed; the same seed and size give identical files.
        size: image height (long side) in pixels, >= 64; width is ``round(size * 13 / 16)``.
        png: also write 16-bit PNG copies.
        progress: optional callback ``(done, total)`` after each patient.

    Returns:
        The :class:`hdcnn.data.manifest.Manifest` that was saved (boxes in original pixels).

    Raises:
        ValueError: ``patients`` < 1 or ``size`` < 64.
    """
    from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
    from hdcnn.dicom import build_dicom, write_dicom
    from hdcnn.terms import LesionSource
    from hdcnn.utils import atomic_write_bytes, atomic_write_text

    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if size < 64:
        raise ValueError(f"size must be >= 64 pixels, got {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = SynthConfig(height=int(size))
    labels = cohort_labels(patients, seed)
    records: list[ImageRecord] = []
    for index, label in enumerate(labels):
        patient = generate_patient(index, label, seed=seed, config=config)
        for number, img in enumerate(patient.images, start=1):
            stem = image_name(patient.patient_id, img.laterality, img.view)
            rel = Path("dicom") / patient.patient_id / f"{stem}.dcm"
            ds = build_dicom(
                img.pixels,
                laterality=img.laterality,
                view=img.view,
                age_years=patient.age,
                patient_id=patient.patient_id,
                study_uid=patient.study_uid,
                pixel_spacing=config.pixel_spacing,
                extra=_dicom_extra(seed, number, patient),
            )
            write_dicom(out / rel, ds)
            if png:
                ok, buf = cv2.imencode(".png", img.pixels)
                if not ok:  # pragma: no cover - cv2 failure on a valid uint16 array
                    raise RuntimeError(f"could not encode {stem}.png")
                atomic_write_bytes(out / "png" / patient.patient_id / f"{stem}.png", buf.tobytes())
            records.append(
                ImageRecord(
                    image_path=rel.as_posix(),
                    patient_id=patient.patient_id,
                    study_id=patient.study_uid,
                    laterality=img.laterality,
                    view=img.view,
                    age=float(patient.age),
                    density=patient.density,
                    label=img.label,
                    lesions=[
                        Lesion(
                            box=les.box, label=les.label, kind=les.kind, source=LesionSource.MASK
                        )
                        for les in img.lesions
                    ],
                    dataset="synth",
                )
            )
        if progress is not None:
            progress(index + 1, patients)
    manifest = Manifest(records, root=out)
    manifest.save_csv(out / "manifest.csv")
    atomic_write_text(out / "README.txt", _readme(patients, seed, config, png))
    logger.info("wrote %d synthetic images of %d patients to %s", len(records), patients, out)
    return manifest


def _dicom_extra(seed: int, number: int, patient: SynthPatient) -> dict[str, object]:
    """Tags that say loudly that the file is synthetic (UIDs come from ``build_dicom``)."""
    return {
        "PatientName": f"SYNTHETIC^{patient.patient_id}",
        "SeriesDescription": SYNTHETIC_NOTICE,
        "StudyDescription": "SYNTHETIC screening mammogram (hdcnn synth)",
        "ImageComments": f"{SYNTHETIC_NOTICE}; generated by hdcnn synth, seed {seed}",
        "BurnedInAnnotation": "NO",
        "InstanceNumber": number,
        "StudyID": patient.patient_id,
    }


def _readme(patients: int, seed: int, config: SynthConfig, png: bool) -> str:
    return (
        f"{SYNTHETIC_NOTICE.upper()}\n\n"
        "These images were generated by `python -m hdcnn synth` (HD-CNN Mammo). They are\n"
        "SYNTHETIC: no real patient, no diagnosis. They exist to exercise the software.\n\n"
        f"patients: {patients} (4 views each), seed: {seed}, size: {config.height} x "
        f"{config.width} px, pixel spacing {config.pixel_spacing:.4f} mm, png: {png}\n"
        "placement: left breasts against the left image edge, right breasts against the right\n"
        "edge (as in CBIS-DDSM). manifest.csv holds the labels and lesion boxes\n"
        "[x1, y1, x2, y2] in original pixels (bounding boxes of the drawn lesions).\n"
    )
