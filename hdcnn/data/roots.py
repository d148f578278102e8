"""Which server folders a web visitor may open as a dataset: the operator's data roots.

The Dataset explorer takes a folder name from the visitor. It opens it only when, with every
link resolved, it is a directory inside one of the data roots the operator listed in
``HDCNN_DATA_ROOTS`` (folders separated by ``os.pathsep``, ``:`` on Linux)::

    HDCNN_DATA_ROOTS=/data/mini-mias:/data/cbis-ddsm streamlit run app.py

Every other input (a path outside the roots, a file, a path that does not exist, ``..`` or a
symbolic link that leads out of a root) gets the same :data:`REFUSAL`, so the message tells a
visitor nothing about the server's files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from hdcnn.errors import DatasetError

logger = logging.getLogger(__name__)

#: Environment variable holding the data roots (``os.pathsep``-separated folders).
DATA_ROOTS_ENV = "HDCNN_DATA_ROOTS"
#: The one refusal of every folder a visitor may not open (the input is not echoed).
REFUSAL = (
    "refused: only folders inside the data roots this server's operator configured "
    f"({DATA_ROOTS_ENV}) can be opened"
)
_SOURCE = "dataset folder"


def data_roots(value: str | None = None) -> tuple[Path, ...]:
    """The configured data roots, each with its links resolved, in the order given.

    Args:
        value: folders separated by ``os.pathsep``; default: ``$HDCNN_DATA_ROOTS``.

    Returns:
        The absolute real paths of the entries that are existing directories; empty entries are
        ignored and others are skipped with a logged warning. Empty when none is configured.
    """
    text = os.environ.get(DATA_ROOTS_ENV, "") if value is None else value
    roots: list[Path] = []
    for entry in text.split(os.pathsep):
        if not entry.strip():
            continue
        real = _real_dir(Path(entry.strip()).expanduser())
        if real is None:
            logger.warning("%s: %s is not an existing folder; ignored", DATA_ROOTS_ENV, entry)
        elif real not in roots:
            roots.append(real)
    return tuple(roots)


def resolve_dataset_folder(path: str, roots: Sequence[Path]) -> Path:
    """The real folder that a visitor's ``path`` names, if it lies inside one of ``roots``.

    Args:
        path: as typed: absolute, or relative to a root (each root is tried in order).
        roots: allowed folders, absolute with links resolved (:func:`data_roots`).

    Returns:
        The folder's absolute path with every link resolved; it is a root or lies inside one.

    Raises:
        DatasetError: ``"dataset folder: " + REFUSAL``, the same for every refused input:
            outside the roots, not a directory, nonexistent, unreadable, or invalid.
    """
    text = path.strip()
    if text:
        given = Path(text)
        candidates = [given] if given.is_absolute() else [root / given for root in roots]
        for candidate in candidates:
            real = _real_dir(candidate)
            if real is not None and any(real.is_relative_to(root) for root in roots):
                return real
    raise DatasetError(_SOURCE, REFUSAL)


def _real_dir(path: Path) -> Path | None:
    """``path`` with every link and ``..`` resolved if that is an existing directory, else None."""
    try:
        real = Path(os.path.realpath(path, strict=True))
        return real if real.is_dir() else None
    except (OSError, ValueError, RuntimeError):  # missing, unreadable, NUL byte, link loop
        return None


__all__ = ["DATA_ROOTS_ENV", "REFUSAL", "data_roots", "resolve_dataset_folder"]
