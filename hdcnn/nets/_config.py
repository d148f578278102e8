"""Rebuilding frozen network configs from the plain dicts stored in checkpoints."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """``cls(**data)`` from ``dataclasses.asdict`` output: lists become tuples.

    Args:
        cls: a dataclass type.
        data: its fields as plain types (as saved in a checkpoint).
        what: a name for error messages (``"detector"``, ``"classifier"``).

    Raises:
        ValueError: a key that is not a field of ``cls``.
    """
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {what} config keys {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
