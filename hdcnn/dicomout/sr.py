"""The findings as a DICOM Structured Report: a TID 1500 measurement report in a
Comprehensive SR document.

Content tree (``dsrdump`` prints it)::

    Imaging Measurement Report (TID 1500)
      Observer: the algorithm (device observer, its name and weights hash)
      Procedure reported: Mammography
      Image Library: every source image
      Imaging Measurements
        per image:    Measurement Group "Image <i> verdict" (TID 1501)
                        P(abnormal), P(cancer) on the source image; the thresholds in force;
                        verdict (SNOMED normal/benign/malignant), decided by, rule (text)
        per kept finding: Measurement Group "Image <i> finding #<n>" (TID 1410)
                        region: SCOORD POLYLINE on the source image (original pixels)
                        P(lesion), P(cancer), detector score; label, deciding stage,
                        candidate stream, whether the verdict rests on it; rule (text)
        exam only:    "Breast L/R verdict" and "Exam verdict" groups (max rule)
      every group: Algorithm Identification (name, version, weights sha256, thresholds)

Concepts without a standard code use the local scheme ``99HDCNN``
(:mod:`hdcnn.dicomout.common`), declared in the Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import highdicom as hd
import highdicom.coding_schemes
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from hdcnn.dicom_build import text_uid
from hdcnn.dicomout.common import (
    DECIDED_BY,
    DECISION_RULE,
    DETECTOR_SCORE,
    LABEL_CODES,
    LATERALITY_CODES,
    LOCAL_SCHEME,
    MANUFACTURER,
    NO,
    P_ABNORMAL,
    P_LESION,
    P_MALIGNANT,
    SR_SERIES_DESCRIPTION,
    SR_SERIES_NUMBER,
    STAGE,
    STAGE_CODES,
    STREAM,
    STREAM_CODES,
    SUPPORTS_VERDICT,
    THRESHOLD_CONCEPTS,
    UNITLESS,
    VERDICT,
    YES,
    Algorithm,
    SourceImage,
    kept_findings,
    rectangle,
)
from hdcnn.terms import FindingStatus, Label

if TYPE_CHECKING:
    from hdcnn.cascade import ExamPrediction
    from hdcnn.reasons import Explanation

#: Title of the report (CID 7021).
TITLE = codes.cid7021.ImagingMeasurementReport
#: Concept name of an Image Library entry (SCT 260753009 "Source").
SOURCE = Code("260753009", "SCT", "Source")


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value[:1000], relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _measure(name: Code, value: float, refs: Sequence[SourceImage] = ()) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=name,
        value=round(float(value), 6),
        unit=UNITLESS,
        referenced_images=[
            hd.sr.SourceImageForMeasurement.from_source_image(s.header) for s in refs
        ]
        or None,
    )


def _sites(laterality: str | None) -> list[hd.sr.FindingSite]:
    lat = LATERALITY_CODES.get(str(laterality).upper()) if laterality else None
    return [hd.sr.FindingSite(anatomic_location=codes.SCT.Breast, laterality=lat)]


def _verdict_group(
    title: str,
    why: Explanation,
    p_abnormal: float,
    p_malignant: float,
    refs: Sequence[SourceImage],
    laterality: str | None,
    algorithm_id: hd.sr.AlgorithmIdentification,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """A TID 1501 group: one verdict with its probabilities, thresholds and rule."""
    measurements = [
        _measure(P_ABNORMAL, p_abnormal, refs),
        _measure(P_MALIGNANT, p_malignant, refs),
    ]
    measurements += [
        _measure(THRESHOLD_CONCEPTS[key], value) for key, value in why.thresholds.to_dict().items()
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=title),
        algorithm_id=algorithm_id,
        finding_sites=_sites(laterality),
        measurements=measurements,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(VERDICT, LABEL_CODES[Label(why.label)]),
            hd.sr.QualitativeEvaluation(DECIDED_BY, THRESHOLD_CONCEPTS[str(why.decided_by)]),
        ],
    )
    group[0].ContentSequence.append(_text(DECISION_RULE, why.reason))
    return group


def _finding_groups(
    index: int, image: SourceImage, algorithm_id: hd.sr.AlgorithmIdentification
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    """One TID 1410 group per kept finding of an image (numbered as in every table)."""
    groups = []
    for box, f in kept_findings(image.prediction):
        status = FindingStatus(f["status"])
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=rectangle(box),
            source_image=hd.sr.SourceImageForRegion.from_source_image(image.header),
        )
        measurements = [_measure(P_LESION, f["p_lesion"])]
        if f["p_malignant"] is not None:
            measurements.append(_measure(P_MALIGNANT, f["p_malignant"]))
        measurements.append(_measure(DETECTOR_SCORE, f["detector_score"]))
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=hd.UID(), identifier=f"Image {index} finding #{f['number']}"
            ),
            referenced_region=region,
            finding_type=codes.SCT.Lesion,
            algorithm_id=algorithm_id,
            finding_sites=_sites(image.laterality),
            measurements=measurements,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(VERDICT, LABEL_CODES[Label(f["label"])]),
                hd.sr.QualitativeEvaluation(STAGE, STAGE_CODES[status]),
                hd.sr.QualitativeEvaluation(STREAM, STREAM_CODES[f.get("stream") or "mass"]),
                hd.sr.QualitativeEvaluation(SUPPORTS_VERDICT, YES if f["prominent"] else NO),
            ],
        )
        group[0].ContentSequence.append(_text(DECISION_RULE, f["reason"] or ""))
        groups.append(group)
    return groups


def measurement_groups(
    images: Sequence[SourceImage],
    algorithm: Algorithm,
    exam: ExamPrediction | None = None,
) -> list[hd.sr.Template]:
    """The report's measurement groups: per image its verdict then its kept findings; then,
    for an exam, each breast's verdict and the exam's."""
    from hdcnn.reasons import explain, explain_verdict

    algorithm_id = hd.sr.AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version, parameters=algorithm.parameters()
    )
    groups: list[hd.sr.Template] = []
    for index, image in enumerate(images, 1):
        pred = image.prediction
        groups.append(
            _verdict_group(
                f"Image {index} verdict",
                explain(pred),
                pred.p_abnormal,
                pred.p_malignant,
                [image],
                image.laterality,
                algorithm_id,
            )
        )
        groups.extend(_finding_groups(index, image, algorithm_id))
    if exam is not None:
        t = algorithm.thresholds
        for side, breast in exam.breasts.items():
            refs = [s for s in images if (s.laterality or "unknown") == side] or list(images)
            why = explain_verdict(
                breast.label, breast.p_abnormal, breast.p_malignant, t, subject="breast"
            )
            lat = side if side in LATERALITY_CODES else None
            groups.append(
                _verdict_group(
                    f"Breast {side} verdict",
                    why,
                    breast.p_abnormal,
                    breast.p_malignant,
                    refs,
                    lat,
                    algorithm_id,
                )
            )
        why = explain_verdict(exam.label, exam.p_abnormal, exam.p_malignant, t, subject="exam")
        groups.append(
            _verdict_group(
                "Exam verdict",
                why,
                exam.p_abnormal,
                exam.p_malignant,
                list(images),
                None,
                algorithm_id,
            )
        )
    return groups


def image_library(images: Sequence[SourceImage]) -> hd.sr.ContainerContentItem:
    """TID 1600 Image Library: one Source image item per analysed image.

    highdicom's own library needs ImagerPixelSpacing and PatientOrientation for
    projection images, which film mammograms (CBIS-DDSM) do not carry; the entry
    descriptors are optional, so the library lists the images without them.
    """
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    group = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibraryGroup, relationship_type=contains)
    group.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.ImageContentItem(
                name=SOURCE,
                referenced_sop_class_uid=s.header.SOPClassUID,
                referenced_sop_instance_uid=s.header.SOPInstanceUID,
                relationship_type=contains,
            )
            for s in images
        ]
    )
    library = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibrary, relationship_type=contains)
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library


def build_sr(
    images: Sequence[SourceImage],
    algorithm: Algorithm,
    *,
    exam: ExamPrediction | None = None,
    series_uid: str | None = None,
    instance_number: int = 1,
) -> hd.sr.ComprehensiveSR:
    """A Comprehensive SR holding a TID 1500 report of one image's or one exam's analysis.

    Args:
        images: the analysed images (headers as they should be referenced); the report is
            filed in the first image's study (images of other studies are listed as other
            evidence).
        algorithm: the algorithm's identity and thresholds.
        exam: the exam's verdicts (:func:`hdcnn.cascade.combine_exam`) when the images form one.
        series_uid: the report series (a new UID when None).
        instance_number: the report's number in its series.

    Returns:
        The SR document (a :class:`pydicom.Dataset`), not yet written.
    """
    if not images:
        raise ValueError("a report needs at least one analysed image")
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=text_uid("hdcnn-algorithm", algorithm.sha256),
            name=algorithm.name,
            manufacturer_name=MANUFACTURER,
            model_name=f"{algorithm.name} {algorithm.version}",
            serial_number=algorithm.sha256[:64],
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.Mammography,
        imaging_measurements=measurement_groups(images, algorithm, exam),
        title=TITLE,
    )
    content = report[0].ContentSequence
    content.insert(len(content) - 1, image_library(images))  # before Imaging Measurements
    return hd.sr.ComprehensiveSR(
        evidence=[s.header for s in images],
        content=report,
        series_instance_uid=series_uid or hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
        coding_schemes=[
            hd.coding_schemes.CodingSchemeIdentificationItem(
                designator=LOCAL_SCHEME,
                name="HD-CNN Mammo local codes",
                responsible_organization="HD-CNN Mammo",
            )
        ],
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        device_serial_number=algorithm.sha256[:64],
        specific_character_set="ISO_IR 192",  # UTF-8: the rules' text holds ≥ and —
    )
