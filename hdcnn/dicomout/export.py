"""DICOM outputs of analysed images: source headers, identity, the objects, a folder or a zip.

Identity, the one rule:

- the command line (``python -m hdcnn predict --dicom-out``, ``python -m hdcnn pacs``) runs on
  the user's own machine and keeps the source's patient and study identity, so that a PACS
  files the report and presentation states with the study they describe;
- the web app hands out objects built from headers de-identified by
  :func:`hdcnn.dicom.deidentify` (names, ids, dates, descriptions and private tags removed,
  instance UIDs replaced by their deterministic hashes), marked ``PatientIdentityRemoved``.

Either way the outputs are new series (one report series and one presentation-state series
per study) with new UIDs, in the study of the image they reference.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset

from hdcnn.dicomout.common import Algorithm, SourceImage
from hdcnn.errors import MammogramError

if TYPE_CHECKING:
    from hdcnn.cascade import ExamPrediction, Prediction

log = logging.getLogger(__name__)

#: Attributes the report and presentation-state builders read from a source header; after
#: de-identification the identifying ones are present but empty (DICOM type 2).
_TYPE2_IDENTITY = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)
DEIDENTIFIED_NOTE = (
    "De-identified with hdcnn.dicom.deidentify: patient names, ids, dates, descriptions and "
    "private tags are removed and instance UIDs are replaced by their hashes, so these objects "
    "reference a de-identified copy of the source, not the file in your PACS. Use the command "
    "line (python -m hdcnn predict --dicom-out DIR) on your own machine for objects that a "
    "PACS files with the study."
)


def not_dicom_message(fmt: str | None) -> str:
    """Why an input of format ``fmt`` gets no DICOM output."""
    kind = (fmt or "non-DICOM").upper()
    return (
        f"DICOM output needs a DICOM source: this is a {kind} image, and a DICOM report and "
        "presentation state must reference the source image's DICOM identifiers"
    )


def source_header(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Dataset:
    """The DICOM header of a source image (pixel data not read).

    Args:
        source: a file path or the file's bytes.
        name: what to call it in messages (default: the path).

    Raises:
        MammogramError: not a readable DICOM file, or it lacks the identifiers an output
            references (SOP Class/Instance, Series and Study UIDs, Rows, Columns).
    """
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else source
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except (OSError, EOFError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise MammogramError(label, f"cannot read the DICOM header ({why})") from exc
    except Exception as exc:  # pydicom's InvalidDicomError and friends
        raise MammogramError(label, f"not a DICOM file ({type(exc).__name__})") from exc
    missing = [
        k
        for k in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
        if not str(ds.get(k, "") or "")
    ] + [k for k in ("Rows", "Columns") if ds.get(k) is None]
    if missing:
        raise MammogramError(label, f"DICOM header lacks {', '.join(missing)}")
    if "SamplesPerPixel" not in ds:
        ds.SamplesPerPixel = 1
    for keyword in _TYPE2_IDENTITY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def deidentified_header(header: Dataset) -> Dataset:
    """:func:`hdcnn.dicom.deidentify` of a source header, with the emptied identity
    attributes present (type 2) as the output builders read them."""
    from hdcnn.dicom import deidentify

    out = deidentify(header)
    for keyword in _TYPE2_IDENTITY:
        if keyword not in out:
            setattr(out, keyword, "")
    return out


def to_bytes(ds: Dataset) -> bytes:
    """A dataset as a DICOM file (preamble, file meta)."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class DicomOutputs:
    """The objects of one or more analyses, with their file names.

    Attributes:
        files: ``(file name, dataset)`` in writing order: reports (``*_sr.dcm``) and
            presentation states (``*_pr.dcm``).
        deidentified: built from de-identified headers.
        series: ``(study UID, "SR" | "PR" + laterality)`` -> series UID: one report series
            per study, one presentation-state series per study and breast.
    """

    files: list[tuple[str, Dataset]] = field(default_factory=list)
    deidentified: bool = False
    series: dict[tuple[str, str], str] = field(default_factory=dict)

    def series_uid(self, study_uid: str, kind: str) -> str:
        return self.series.setdefault((str(study_uid), kind), hd.UID())

    @property
    def reports(self) -> list[Dataset]:
        return [ds for name, ds in self.files if name.endswith("_sr.dcm")]

    @property
    def presentation_states(self) -> list[Dataset]:
        return [ds for name, ds in self.files if name.endswith("_pr.dcm")]

    def add(
        self,
        images: Sequence[SourceImage],
        algorithm: Algorithm,
        *,
        names: Sequence[str],
        exam: ExamPrediction | None = None,
        exam_name: str = "exam",
    ) -> None:
        """Add the objects of images analysed alone (``exam`` None: one report each) or of
        one exam (one report for all); always one presentation state per image.

        Args:
            images: analysed images, headers as given (identity kept) unless this collection
                is ``deidentified``.
            algorithm: the algorithm's identity and thresholds.
            names: a file-name stem per image (``"image01"``).
            exam: the images' exam verdicts, or None.
            exam_name: the exam report's file-name stem.
        """
        if self.deidentified:
            images = [SourceImage(deidentified_header(s.header), s.prediction) for s in images]
        new: list[tuple[str, Dataset]] = []
        with warnings.catch_warnings():
            # highdicom warns about single-component patient names (CBIS-DDSM's ids): the
            # name is the source's, copied as it is filed
            warnings.filterwarnings(
                "ignore", message=".*intended person name", category=UserWarning
            )
            self._build(images, algorithm, names, exam, exam_name, new)
        if self.deidentified:
            for _, ds in new:
                ds.PatientIdentityRemoved = "YES"
                ds.DeidentificationMethod = "hdcnn.dicom.deidentify (source header)"
        self.files.extend(new)

    def _build(
        self,
        images: Sequence[SourceImage],
        algorithm: Algorithm,
        names: Sequence[str],
        exam: ExamPrediction | None,
        exam_name: str,
        new: list[tuple[str, Dataset]],
    ) -> None:
        from hdcnn.dicomout.gsps import build_gsps
        from hdcnn.dicomout.sr import build_sr

        def number(kind: str) -> int:
            return 1 + sum(1 for n, _ in [*self.files, *new] if n.endswith(f"_{kind}.dcm"))

        if exam is not None:
            study = images[0].header.StudyInstanceUID
            sr = build_sr(
                images,
                algorithm,
                exam=exam,
                series_uid=self.series_uid(study, "SR"),
                instance_number=number("sr"),
            )
            new.append((f"{exam_name}_sr.dcm", sr))
        for image, stem in zip(images, names, strict=True):
            study = image.header.StudyInstanceUID
            if exam is None:
                sr = build_sr(
                    [image],
                    algorithm,
                    series_uid=self.series_uid(study, "SR"),
                    instance_number=number("sr"),
                )
                new.append((f"{stem}_sr.dcm", sr))
            pr = build_gsps(
                image,
                algorithm,
                series_uid=self.series_uid(study, f"PR{image.laterality or ''}"),
                instance_number=number("pr"),
            )
            new.append((f"{stem}_pr.dcm", pr))

    def write(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write every object into ``folder`` (created), each file atomically."""
        from hdcnn.utils import atomic_write_bytes

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, ds in self.files:
            atomic_write_bytes(out / name, to_bytes(ds))
            paths.append(out / name)
        return paths

    def zip_bytes(self) -> bytes:
        """Every object in one zip, with a ``README.txt`` that says what they are."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, ds in self.files:
                zf.writestr(name, to_bytes(ds))
            zf.writestr("README.txt", self.readme())
        return buf.getvalue()

    def readme(self) -> str:
        from hdcnn.report import DISCLAIMER

        lines = [
            "HD-CNN Mammo DICOM results",
            "",
            "*_sr.dcm: Comprehensive SR, TID 1500 measurement report of the findings.",
            "*_pr.dcm: Grayscale Softcopy Presentation State drawing the numbered findings.",
            "",
            DEIDENTIFIED_NOTE if self.deidentified else "Source identity kept.",
            "",
            DISCLAIMER,
        ]
        return "\n".join(lines) + "\n"


def build_outputs(
    images: Sequence[SourceImage],
    algorithm: Algorithm,
    *,
    exam: ExamPrediction | None = None,
    deidentified: bool = False,
    names: Sequence[str] | None = None,
) -> DicomOutputs:
    """The DICOM objects of analysed images (see :meth:`DicomOutputs.add`)."""
    out = DicomOutputs(deidentified=deidentified)
    names = list(names or [f"image{i:02d}" for i in range(1, len(images) + 1)])
    out.add(images, algorithm, names=names, exam=exam)
    return out


def exam_of(
    images: Sequence[SourceImage], thresholds: Any
) -> list[tuple[list[int], ExamPrediction]]:
    """Exams of analysed images by the project's one grouping rule
    (:func:`hdcnn.analysis.group_exams`, as ``predict --exam``).

    Returns:
        ``[(indices into images, exam prediction)]``.
    """
    from hdcnn.analysis import group_exams
    from hdcnn.cascade import combine_exam

    groups: dict[str | None, list[tuple[str | None, str | None, int]]] = {}
    for i, image in enumerate(images):
        key = getattr(image.prediction.meta, "study_key", None)
        groups.setdefault(key, []).append((image.laterality, image.view, i))
    out = []
    for key, items in group_exams(groups).items():
        members = [i for _, _, i in items]
        preds = [(lat, view, images[i].prediction) for lat, view, i in items]
        out.append((members, combine_exam(preds, thresholds, key=key)))
    return out


class PredictionRecorder:
    """A cascade stand-in for ``python -m hdcnn predict --dicom-out``: predicts through the
    real cascade and keeps each file's prediction, so that the DICOM objects are built from
    the same predictions as the table and JSON (no second run).

    Every other attribute (name, sha256, thresholds, max_candidates) is the cascade's.
    """

    def __init__(self, cascade: Any) -> None:
        self._cascade = cascade
        self.records: list[tuple[Path, Prediction]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cascade, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_cascade", "records"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._cascade, name, value)

    def predict(self, source: Any, *args: Any, **kwargs: Any) -> Prediction:
        pred = self._cascade.predict(source, *args, **kwargs)
        self.records.append((Path(source), pred))
        return pred

    def write(
        self,
        folder: str | os.PathLike[str],
        *,
        exam: bool = False,
        order: Sequence[str | os.PathLike[str]] | None = None,
    ) -> tuple[list[Path], list[tuple[Path, str]]]:
        """Write the DICOM objects of every recorded DICOM input into ``folder``.

        Args:
            exam: one report per exam (grouped as ``predict --exam`` groups) instead of one
                per image.
            order: the inputs in the order given (predictions finish in any order when the
                analysis pool runs them side by side); images are numbered in this order.

        Returns:
            ``(written paths, [(input, why it got no output)])``: non-DICOM inputs get
            :func:`not_dicom_message`; unreadable headers their error.
        """
        images: list[SourceImage] = []
        stems: list[str] = []
        skipped: list[tuple[Path, str]] = []
        records = list(self.records)
        if order is not None:
            rank = {Path(p): i for i, p in enumerate(order)}
            records.sort(key=lambda r: rank.get(r[0], len(rank)))
        for position, (path, pred) in enumerate(records, 1):
            fmt = getattr(pred.meta, "format", None)
            if fmt != "dicom":
                skipped.append((path, not_dicom_message(fmt)))
                continue
            try:
                header = source_header(path)
            except MammogramError as exc:
                skipped.append((path, exc.problem))
                continue
            images.append(SourceImage(header, pred))
            stems.append(f"image{position:02d}")
        outputs = DicomOutputs()
        algorithm = Algorithm.from_cascade(self._cascade)
        if exam:
            for number, (members, prediction) in enumerate(
                exam_of(images, algorithm.thresholds), 1
            ):
                outputs.add(
                    [images[i] for i in members],
                    algorithm,
                    names=[stems[i] for i in members],
                    exam=prediction,
                    exam_name=f"exam{number:02d}",
                )
        elif images:
            outputs.add(images, algorithm, names=stems)
        written = outputs.write(folder) if outputs.files else []
        return written, skipped


def analysis_zip(
    sources: Mapping[str, bytes],
    analyses: Sequence[Any],
    cascade: Any,
    *,
    exam: ExamPrediction | None = None,
) -> bytes:
    """The de-identified DICOM objects of the app's analyses, as one zip.

    Args:
        sources: each analysis's input bytes by its key (``Analysis.key``, the sha256).
        analyses: :class:`hdcnn.analysis.Analysis` objects of DICOM inputs.
        cascade: the cascade that made them (its name, hash and thresholds).
        exam: the exam's verdicts when the analyses form one.

    Raises:
        MammogramError: an input is not DICOM (:func:`not_dicom_message`).
    """
    images = []
    for a in analyses:
        if a.mammogram.meta.format != "dicom":
            raise MammogramError(a.name, not_dicom_message(a.mammogram.meta.format))
        images.append(SourceImage(source_header(sources[a.key], name=a.name), a.prediction))
    algorithm = replace(
        Algorithm.from_cascade(cascade), thresholds=analyses[0].prediction.thresholds
    )
    return build_outputs(images, algorithm, exam=exam, deidentified=True).zip_bytes()
