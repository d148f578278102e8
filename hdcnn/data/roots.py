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

from hdcnn.data.manifest import Manifest
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
            if real is not None and _inside(real, roots):
                return real
    raise DatasetError(_SOURCE, REFUSAL)


def images_inside(manifest: Manifest, roots: Sequence[Path]) -> tuple[Manifest, int]:
    """The records whose image file, links resolved, lies inside one of ``roots``.

    A table inside a root may still list ``/elsewhere/x.png`` or ``../../x.png``, or an image
    may be a link out of the root: those images are left out, so that no file outside the
    roots is read.

    Args:
        manifest: a dataset loaded from a folder inside ``roots``.
        roots: absolute folders with links resolved (:func:`data_roots`).

    Returns:
        ``(manifest of the records inside, number of records left out)``; the input is not
        changed.
    """
    kept = [
        record
        for record in manifest
        if (real := _real(manifest.resolve(record))) is not None and _inside(real, roots)
    ]
    return Manifest(kept, root=manifest.root), len(manifest) - len(kept)


def _inside(real: Path, roots: Sequence[Path]) -> bool:
    return any(real.is_relative_to(root) for root in roots)


def _real(path: Path, *, strict: bool = False) -> Path | None:
    """``path`` with every link and ``..`` resolved; None if that fails (``strict``: or if
    it does not exist)."""
    try:
        return Path(os.path.realpath(path, strict=strict))
    except (OSError, ValueError, RuntimeError):  # missing, unreadable, NUL byte, link loop
        return None


def _real_dir(path: Path) -> Path | None:
    """``path`` with every link and ``..`` resolved if that is an existing directory, else None."""
    real = _real(path, strict=True)
    return real if real is not None and real.is_dir() else None


__all__ = ["DATA_ROOTS_ENV", "REFUSAL", "data_roots", "images_inside", "resolve_dataset_folder"]
