"""The calcification stream's ``cascade.json`` records: its settings and its known answers.

A weights folder may carry a second candidate stream beside the detector's (docs/CASCADE.md,
"Two streams"): the speck-density spots of :mod:`hdcnn.spots` on the original pixels, judged by
their own classifier (:data:`~hdcnn.config.CALC_WEIGHT_FILE`) against their own threshold. Its
settings travel in ``cascade.json["calc_stream"]``::

    {"spots": {SpotConfig fields}, "crop_size": 64, "threshold": 0.5}

:mod:`hdcnn.config` imports this module (never the reverse), so it depends on nothing of
the image code. Both records are parsed and checked like every other field of :class:`~hdcnn.config.
CascadeConfig` (a wrong value is a ``FieldError`` naming the field and the value).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from hdcnn import jsonfields as jf
from hdcnn.spotconfig import SpotConfig

#: Side of the calcification stream's crops (its classifier's input). Its 8-mm spot boxes
#: with the crop context span 12 mm: 60 pixels of a mini-MIAS film (0.2 mm), so 64 px keeps
#: their resolution there at a third of the cost of :data:`hdcnn.config.CROP_SIZE` crops.
CALC_CROP_SIZE = 64

#: The stream's spot finder: the 20 strongest speck-density maxima per image (the detector's
#: candidate budget, ``MAX_CANDIDATES``), sizes of :class:`~hdcnn.spotconfig.SpotConfig`.
CALC_SPOTS = SpotConfig(k=20)

#: Most spots per image a folder may ask for.
MAX_SPOTS = 200
#: Bounds of every physical size of the spot finder (millimetres).
_MM = (0.0, 100.0)


def _spot_config(value: Any, name: str) -> SpotConfig:
    if isinstance(value, SpotConfig):
        return value
    d = jf.as_object(value, name)
    known = [f.name for f in fields(SpotConfig)]
    jf.check_keys(d, name, known)
    kwargs: dict[str, Any] = {}
    for key, v in d.items():
        if key == "k":
            kwargs[key] = jf.as_int(v, f"{name}.k", 1, MAX_SPOTS)
        else:
            kwargs[key] = jf.as_real(v, f"{name}.{key}", *_MM)
    try:
        return SpotConfig(**kwargs)
    except ValueError as exc:
        raise jf.FieldError(name, str(exc)) from exc


@dataclass(frozen=True)
class CalcStreamConfig:
    """The calcification stream of a weights folder.

    Attributes:
        threshold: the stream's own P(lesion) threshold: a spot at or above it is a lesion
            (and goes on to Classifier 2); below it the spot is rejected by the stream.
        spots: sizes and count of the spot finder (:class:`hdcnn.spots.SpotConfig`).
        crop_size: side of the stream classifier's crops (its input size).
    """

    threshold: float
    spots: SpotConfig = CALC_SPOTS
    crop_size: int = CALC_CROP_SIZE

    def __post_init__(self) -> None:
        name = "calc_stream"
        object.__setattr__(self, "threshold", jf.as_real(self.threshold, f"{name}.threshold", 0, 1))
        object.__setattr__(self, "spots", _spot_config(self.spots, f"{name}.spots"))
        object.__setattr__(
            self, "crop_size", jf.as_int(self.crop_size, f"{name}.crop_size", 8, 1024)
        )

    @classmethod
    def from_json(cls, data: Any, name: str = "calc_stream") -> CalcStreamConfig:
        d = jf.as_object(data, name)
        jf.check_keys(d, name, ["threshold", "spots", "crop_size"])
        if "threshold" not in d:
            raise jf.FieldError(f"{name}.threshold", "missing")
        return cls(
            threshold=d["threshold"],
            spots=d.get("spots", CALC_SPOTS),
            crop_size=d.get("crop_size", CALC_CROP_SIZE),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "spots": asdict(self.spots),
            "crop_size": self.crop_size,
        }


@dataclass(frozen=True)
class SpotAnswer:
    """The calcification stream's expected outputs on one reference input.

    Attributes:
        boxes: spot boxes, model pixels, in the finder's order.
        density: their cluster densities.
        p_lesion: the stream classifier's P(lesion) of each.
    """

    boxes: tuple[tuple[float, float, float, float], ...]
    density: tuple[float, ...]
    p_lesion: tuple[float, ...]

    @classmethod
    def from_json(cls, data: Any, reference: str) -> SpotAnswer:
        """Parse the ``spots`` of the reference answer whose JSON path is ``reference``."""
        name = f"{reference}.spots"
        d = jf.as_object(data, name)
        jf.check_keys(d, name, ["boxes", "density", "p_lesion"])
        out = cls(
            boxes=jf.as_boxes(d.get("boxes"), f"{name}.boxes"),
            density=jf.as_reals(d.get("density"), f"{name}.density", 0, 1e12),
            p_lesion=jf.as_reals(d.get("p_lesion"), f"{name}.p_lesion", 0, 1),
        )
        if not len(out.boxes) == len(out.density) == len(out.p_lesion):
            raise jf.FieldError(name, "boxes, density and p_lesion lengths differ")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "boxes": [[round(v, 4) for v in b] for b in self.boxes],
            "density": [round(v, 7) for v in self.density],
            "p_lesion": [round(v, 7) for v in self.p_lesion],
        }
