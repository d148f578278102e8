"""Small shared helpers: project paths, atomic file writes, image-size checks."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from hdcnn.errors import MammogramError

logger = logging.getLogger(__name__)

#: The shipped weights: ``models/`` at the top of the project, next to the ``hdcnn`` package.
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or cannot tell): leave its file alone
    return True


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>`` files next to ``target`` whose writer process is gone.

    A process killed while writing (SIGKILL, power loss) cannot remove its temporary file;
    the next atomic write of the same target does. Files of running processes are kept.

    Returns:
        The files removed.
    """
    target = Path(target)
    removed: list[Path] = []
    try:
        candidates = list(target.parent.glob(f".{glob.escape(target.name)}.tmp-*"))
    except OSError:
        return removed
    for tmp in candidates:
        pid_text = tmp.name.rsplit(".tmp-", 1)[-1]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
            logger.info("removed %s, left behind by an interrupted write", tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    Nothing is left half-written: on an exception the temporary file is removed and ``path``
    keeps its previous content (or stays absent). A temporary file left by a writer that was
    killed (``.<name>.tmp-<pid>`` of a process that no longer exists) is removed first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_image_size(
    source: str, height: int, width: int, *, max_pixels: int, min_side: int
) -> None:
    """Refuse, from header dimensions alone, an image that is empty, too large or too small.

    Used for DICOM and raster headers before anything is decoded.

    Raises:
        MammogramError: naming ``source`` and the size found.
    """
    if height <= 0 or width <= 0:
        raise MammogramError(source, f"header gives an empty image ({height}x{width} pixels)")
    if height * width > max_pixels:
        raise MammogramError(
            source,
            f"image of {height}x{width} pixels is larger than the limit of {max_pixels} pixels",
        )
    if min(height, width) < min_side:
        raise MammogramError(
            source,
            f"image of {height}x{width} pixels is too small (at least {min_side} per side)",
        )
