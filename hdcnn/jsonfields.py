"""Checked reading of JSON fields: each check names the field (its JSON path) and the bad value.

Used by :mod:`hdcnn.config` for ``cascade.json``; a failed check raises :class:`FieldError`
(a ``ValueError``), which the reader turns into a
:class:`~hdcnn.errors.CheckpointError` naming the file. Values are shown short (scalars up to
40 characters; objects and lists only described), never a file's contents.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any


class FieldError(ValueError):
    """A bad ``cascade.json`` field: ``field`` is its JSON path, ``problem`` what is wrong."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"field {name}: {problem}")
        self.field = name


def show(value: Any) -> str:
    """A short description of a bad value (scalars shown, containers only described)."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item(s)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FieldError(name, f"expected an integer in [{low}, {high}], got {show(value)}")
    if not low <= int(value) <= high:
        raise FieldError(name, f"must be in [{low}, {high}], got {int(value)}")
    return int(value)


def as_real(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FieldError(name, f"expected a number in [{low}, {high}], got {show(value)}")
    if not (math.isfinite(value) and low <= value <= high):
        raise FieldError(name, f"must be a finite number in [{low}, {high}], got {show(value)}")
    return float(value)


def as_text(value: Any, name: str, choices: Sequence[str] | None = None) -> str:
    if not isinstance(value, str) or (choices is not None and value not in choices):
        wanted = f"one of {list(choices)}" if choices is not None else "a string"
        raise FieldError(name, f"expected {wanted}, got {show(value)}")
    return value


def as_object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise FieldError(name, f"expected an object, got {show(value)}")
    return value


def as_list(value: Any, name: str, what: str = "a list") -> list[Any] | tuple[Any, ...]:
    """``value`` when it is a JSON list (or a tuple); else a FieldError "expected ``what``"."""
    if not isinstance(value, list | tuple):
        raise FieldError(name, f"expected {what}, got {show(value)}")
    return value


def as_reals(value: Any, name: str, low: float, high: float) -> tuple[float, ...]:
    items = as_list(value, name, "a list of numbers")
    return tuple(as_real(v, f"{name}[{i}]", low, high) for i, v in enumerate(items))


def as_boxes(value: Any, name: str) -> tuple[tuple[float, float, float, float], ...]:
    """A list of ``[x1, y1, x2, y2]`` boxes (coordinates within +-1e6)."""
    boxes = []
    for i, b in enumerate(as_list(value, name, "a list of boxes")):
        box = as_reals(b, f"{name}[{i}]", -1e6, 1e6)
        if len(box) != 4:
            raise FieldError(f"{name}[{i}]", f"expected [x1, y1, x2, y2], got {box}")
        boxes.append((box[0], box[1], box[2], box[3]))
    return tuple(boxes)


def as_json(value: Any, name: str) -> Any:
    """A plain JSON value (objects, lists, strings, finite numbers, booleans, null), copied."""
    if isinstance(value, Mapping):
        return {str(k): as_json(v, f"{name}.{k}") for k, v in as_object(value, name).items()}
    if isinstance(value, list | tuple):
        return [as_json(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise FieldError(name, f"numbers must be finite, got {value!r}")
        return float(value)
    raise FieldError(name, f"expected a JSON value, got {type(value).__name__}")


def check_keys(data: Mapping[str, Any], name: str, known: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = f"field {name}" if name else "top level"
        raise FieldError(name or unknown[0], f"unknown key(s) {unknown} at {where}")


def as_sha(value: Any, name: str) -> str:
    text = as_text(value, name)
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text.lower()):
        raise FieldError(name, f"expected a SHA-256 (64 hex digits), got {show(value)}")
    return text.lower()
