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

from hdcnn.data.synth_draw import (
    breast_for,
    calc_intensity,
    lesion_centre,
    mass_intensity,
    power_law_noise,
)
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
    breast = breast_for(view, h, w, rng)

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
        centre = lesion_centre(breast, spec.depth, rng, radius)
        malignant = spec.label == Label.MALIGNANT
        if spec.kind == "calcification":
            add = calc_intensity((h, w), centre, radius, malignant, shape_rng, px_per_mm)
            core = add
            gain, visible = 0.40, 0.15
        else:
            add, core = mass_intensity(xx, yy, centre, radius, malignant, shape_rng, rng)
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


def lesion_spec(label: Label, rng: np.random.Generator) -> LesionSpec:
    """A random lesion of a ``label`` image: kind, size, depth and shape seed."""
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
        specs = [lesion_spec(label, rng)]
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
