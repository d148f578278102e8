"""A PACS round trip over DICOMweb: fetch a study's mammograms, analyse them as one exam,
store the report and presentation states back into the same study.

Order of work, so that nothing is half-stored: search the study's series (QIDO-RS), retrieve
every mammography series (WADO-RS), read and analyse every image, build every object, and
only then store them all in one STOW-RS request. A server that cannot be reached, a study it
does not hold, a study without mammograms or an image that cannot be read stop the run
before anything is stored (:class:`hdcnn.errors.PacsError` / :class:`MammogramError`).

The objects keep the source's patient and study identity (this runs against the user's own
PACS, like ``predict --dicom-out``; see :mod:`hdcnn.dicomout.export`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydicom.dataset import Dataset

from hdcnn.dicom import MAMMO_MODALITIES
from hdcnn.dicomout.common import Algorithm, SourceImage
from hdcnn.dicomout.export import DicomOutputs, build_outputs, source_header, to_bytes
from hdcnn.errors import MammogramError, PacsError

if TYPE_CHECKING:
    from hdcnn.cascade import ExamPrediction

log = logging.getLogger(__name__)

#: DICOMweb root of an Orthanc server (its DICOMweb plugin's default), used when ``--url``
#: names only the server.
ORTHANC_DICOMWEB_ROOT = "/dicom-web"
#: Seconds to wait for the server on each request.
TIMEOUT_S = 30.0

_MODALITY, _SERIES_UID, _FAILED_SOP = "00080060", "0020000E", "00081198"


def dicomweb_root(url: str) -> str:
    """The DICOMweb service root: ``url`` itself, or Orthanc's ``/dicom-web`` under it when
    ``url`` is a bare server address (``http://host:8042``)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PacsError(url, "not an http(s) URL of a DICOMweb server")
    if parts.path in ("", "/"):
        return url.rstrip("/") + ORTHANC_DICOMWEB_ROOT
    return url.rstrip("/")


def client_for(url: str) -> Any:
    """A ``dicomweb_client.DICOMwebClient`` for the server at ``url``."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=dicomweb_root(url), timeout=TIMEOUT_S)
    # the client retries every failed request (connection refused included) 5 times over
    # ~30 s by default: one retry after half a second is enough for a busy server
    client.set_http_retry_params(max_attempts=2, wait_exponential_multiplier=250)
    return client


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _call(url: str, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one DICOMweb request; network and HTTP failures become :class:`PacsError`."""
    import requests

    try:
        return fn(*args, **kwargs)
    except requests.exceptions.ConnectionError:
        raise PacsError(url, f"cannot reach the DICOMweb server ({what})") from None
    except requests.exceptions.Timeout:
        raise PacsError(
            url, f"the DICOMweb server did not answer in {TIMEOUT_S:.0f} s ({what})"
        ) from None
    except requests.exceptions.HTTPError as exc:
        code = getattr(exc.response, "status_code", "?")
        raise PacsError(url, f"the DICOMweb server answered HTTP {code} ({what})") from None


def fetch_mammograms(client: Any, url: str, study_uid: str) -> list[Dataset]:
    """Every image of the study's mammography series (Modality ``MG``).

    Raises:
        PacsError: unreachable server, unknown study, or no mammography series.
    """
    series = _call(url, "searching the study's series", client.search_for_series, study_uid)
    if not series:
        raise PacsError(url, f"study {study_uid} not found on the server")
    mammo = [s for s in series if _value(s, _MODALITY).upper() in MAMMO_MODALITIES]
    if not mammo:
        found = sorted({_value(s, _MODALITY) or "?" for s in series})
        raise PacsError(
            url,
            f"study {study_uid} holds no mammograms (series modalities: {', '.join(found)})",
        )
    images: list[Dataset] = []
    for s in mammo:
        images += _call(
            url,
            "retrieving a mammography series",
            client.retrieve_series,
            study_uid,
            _value(s, _SERIES_UID),
        )
    return images


@dataclass(frozen=True)
class StudyAnalysis:
    """A study's images analysed as one exam, and the objects to store back.

    Attributes:
        images: each image's header and prediction (boxes in original pixels).
        exam: per-breast and exam verdicts.
        outputs: the report and the presentation states (identity kept).
    """

    images: list[SourceImage]
    exam: ExamPrediction
    outputs: DicomOutputs


def analyse_study(datasets: list[Dataset], cascade: Any) -> StudyAnalysis:
    """Analyse a study's images with the cascade and build its DICOM objects.

    Raises:
        MammogramError: an image cannot be used (named ``"image <n> of the study"``).
    """
    from hdcnn.cascade import combine_exam
    from hdcnn.reader import read_mammogram

    images = []
    for n, ds in enumerate(datasets, 1):
        name = f"image {n} of the study"
        data = to_bytes(ds)
        pred = cascade.predict(read_mammogram(data, name=name))
        images.append(SourceImage(source_header(data, name=name), pred))
    algorithm = Algorithm.from_cascade(cascade)
    exam = combine_exam(
        [(s.laterality, s.view, s.prediction) for s in images], algorithm.thresholds
    )
    outputs = build_outputs(images, algorithm, exam=exam)
    return StudyAnalysis(images, exam, outputs)


def store(client: Any, url: str, study_uid: str, outputs: DicomOutputs) -> None:
    """Store every object in one STOW-RS request.

    Raises:
        PacsError: the request failed, or the server refused some of the objects.
    """
    datasets = [ds for _, ds in outputs.files]
    answer = _call(url, "storing the results", client.store_instances, datasets, study_uid)
    failed = answer.get(_FAILED_SOP) if isinstance(answer, Dataset) else None
    if failed is not None and len(failed.value or []) > 0:
        raise PacsError(url, f"the server refused {len(failed.value)} of {len(datasets)} objects")


def round_trip(
    url: str, study_uid: str, cascade: Callable[[], Any], *, client: Any = None
) -> StudyAnalysis:
    """Fetch, analyse and store back one study (see the module docstring for the order).

    Args:
        url: the server (``http://host:8042``: Orthanc's ``/dicom-web``) or a DICOMweb root.
        study_uid: the study's StudyInstanceUID.
        cascade: returns the :class:`hdcnn.cascade.Cascade`; called once the study's images
            are fetched (a server or study problem is reported without loading the models).
        client: a DICOMweb client (default: :func:`client_for`).

    Raises:
        PacsError: see :func:`fetch_mammograms` and :func:`store`.
        MammogramError: an image of the study cannot be used.
    """
    client = client or client_for(url)
    datasets = fetch_mammograms(client, url, study_uid)
    try:
        result = analyse_study(datasets, cascade())
    except MammogramError as exc:
        raise PacsError(url, f"study {study_uid}: {exc} (nothing stored)") from exc
    store(client, url, study_uid, result.outputs)
    log.info("stored %d objects in study %s", len(result.outputs.files), study_uid)
    return result
