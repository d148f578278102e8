"""The known-answer records of ``cascade.json`` (``known_answers``): the outputs a weights folder
must give on its SYNTHETIC reference inputs, checked when a cascade is loaded
(:mod:`hdcnn.cascade.known_answers` makes and compares them; :class:`hdcnn.config.CascadeConfig`
reads and writes them). Parsed and checked like every other field (a wrong value is a
``FieldError`` naming the field and the value).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from hdcnn import jsonfields as jf
from hdcnn.calcstream import SpotAnswer


@dataclass(frozen=True)
class ReferenceAnswer:
    """The expected outputs of the det-hier cascade on one reference input.

    Attributes:
        name: the reference input (:func:`hdcnn.cascade.known_answers.reference_images`).
        input_sha256: SHA-256 of the input's pixels, so a changed generator is told apart from
            changed weights.
        boxes: detector boxes, model pixels ``[x1, y1, x2, y2]``, highest score first.
        scores: their detector scores.
        p_lesion: C1 P(lesion) of the crops of the first ``max_candidates`` boxes.
        p_malignant: C2 P(malignant | lesion) of the same crops.
        label / p_abnormal / p_malignant_image: the image verdict and its probabilities.
        spots: the calcification stream's outputs (folders with a ``calc_stream`` only).
    """

    name: str
    input_sha256: str
    boxes: tuple[tuple[float, float, float, float], ...]
    scores: tuple[float, ...]
    p_lesion: tuple[float, ...]
    p_malignant: tuple[float, ...]
    label: str
    p_abnormal: float
    p_malignant_image: float
    spots: SpotAnswer | None = None

    @classmethod
    def from_json(cls, data: Any, name: str) -> ReferenceAnswer:
        d = jf.as_object(data, name)
        jf.check_keys(d, name, [f.name for f in fields(cls)])
        try:
            out = cls(
                name=jf.as_text(d["name"], f"{name}.name"),
                input_sha256=jf.as_sha(d["input_sha256"], f"{name}.input_sha256"),
                boxes=jf.as_boxes(d["boxes"], f"{name}.boxes"),
                scores=jf.as_reals(d["scores"], f"{name}.scores", 0, 1),
                p_lesion=jf.as_reals(d["p_lesion"], f"{name}.p_lesion", 0, 1),
                p_malignant=jf.as_reals(d["p_malignant"], f"{name}.p_malignant", 0, 1),
                label=jf.as_text(d["label"], f"{name}.label", ("normal", "benign", "malignant")),
                p_abnormal=jf.as_real(d["p_abnormal"], f"{name}.p_abnormal", 0, 1),
                p_malignant_image=jf.as_real(
                    d["p_malignant_image"], f"{name}.p_malignant_image", 0, 1
                ),
                spots=None
                if d.get("spots") is None
                else SpotAnswer.from_json(d["spots"], f"{name}.spots"),
            )
        except KeyError as exc:
            raise jf.FieldError(f"{name}.{exc.args[0]}", "missing") from exc
        if len(out.scores) != len(out.boxes) or len(out.p_lesion) != len(out.p_malignant):
            raise jf.FieldError(name, "boxes/scores or p_lesion/p_malignant lengths differ")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_sha256": self.input_sha256,
            "boxes": [[round(v, 4) for v in b] for b in self.boxes],
            "scores": [round(v, 7) for v in self.scores],
            "p_lesion": [round(v, 7) for v in self.p_lesion],
            "p_malignant": [round(v, 7) for v in self.p_malignant],
            "label": self.label,
            "p_abnormal": round(self.p_abnormal, 7),
            "p_malignant_image": round(self.p_malignant_image, 7),
            **({} if self.spots is None else {"spots": self.spots.to_json()}),
        }


@dataclass(frozen=True)
class KnownAnswers:
    """Expected det-hier outputs on the reference inputs (checked when a cascade is loaded).

    Attributes:
        tolerance: largest accepted absolute difference of a score or probability.
        box_tolerance: largest accepted difference of a box coordinate (model pixels).
        references: one :class:`ReferenceAnswer` per reference input.
    """

    tolerance: float
    box_tolerance: float
    references: tuple[ReferenceAnswer, ...]

    @classmethod
    def from_json(cls, data: Any, name: str = "known_answers") -> KnownAnswers:
        d = jf.as_object(data, name)
        jf.check_keys(d, name, ["tolerance", "box_tolerance", "references"])
        refs = jf.as_list(d.get("references"), f"{name}.references", "a non-empty list")
        if not refs:
            raise jf.FieldError(
                f"{name}.references", f"expected a non-empty list, got {jf.show(refs)}"
            )
        return cls(
            tolerance=jf.as_real(d.get("tolerance"), f"{name}.tolerance", 0, 0.1),
            box_tolerance=jf.as_real(d.get("box_tolerance"), f"{name}.box_tolerance", 0, 16),
            references=tuple(
                ReferenceAnswer.from_json(r, f"{name}.references[{i}]") for i, r in enumerate(refs)
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "box_tolerance": self.box_tolerance,
            "references": [r.to_json() for r in self.references],
        }
