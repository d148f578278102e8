"""Annotation tables read safely: errors name the file and the columns, never the text.

A dataset's CSV can be any file a caller names (``load_dataset("folder", "/etc/shadow")``), so
no message quotes what the file holds: a parse error gives its position, a missing column the
columns expected and, only when the header looks like a table's, the columns found.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from hdcnn.errors import DatasetError

#: Longest parser reason kept in a message.
_MAX_REASON = 120
#: Most columns listed as found.
_MAX_SHOWN_COLUMNS = 40
#: What a column name of a real table looks like ("patient_id", "left or right breast",
#: "Bi-Rads", "ROI mask file path"); pandas names a blank header cell "Unnamed: 3".
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .()#-]{0,39}|Unnamed: \d+")


def read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    """``pandas.read_csv`` with every cell as a string ("" when empty) and stripped headers.

    Raises:
        DatasetError: the file cannot be read or parsed as CSV (a directory included); the
            message says why without quoting the file (:func:`unreadable_reason`).
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)  # type: ignore[arg-type]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        reason = unreadable_reason(exc)
        raise DatasetError(str(path), f"not a readable CSV table ({reason})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_excel(path: Path, reader: str) -> pd.DataFrame:
    """``pandas.read_excel`` of the first sheet with every cell as a string and stripped headers.

    Args:
        path: the ``.xlsx`` / ``.xls`` file.
        reader: the package pandas needs for it (``openpyxl``, ``xlrd``), named when missing.

    Raises:
        DatasetError: the reader is not installed, or the file is no readable Excel table.
    """
    try:
        frame = pd.read_excel(path, dtype=str)
    except ImportError as exc:
        raise DatasetError(str(path), f"cannot read {path.suffix}: pip install {reader}") from exc
    except Exception as exc:  # the readers raise many types on a damaged file (BadZipFile ...)
        reason = unreadable_reason(exc)
        raise DatasetError(str(path), f"not a readable Excel table ({reason})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def unreadable_reason(exc: BaseException) -> str:
    """Why a file could not be read, without quoting any of its text.

    Returns:
        An OS error's reason ("Is a directory", "Permission denied"); a decode error's byte
        offset; a pandas parse error's first line (pandas states positions and counts, never
        cell text); for anything else only the exception's type, as other parsers' messages
        may quote their input.
    """
    if isinstance(exc, UnicodeDecodeError):
        return f"not {exc.encoding} text at byte {exc.start}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, pd.errors.ParserError | pd.errors.EmptyDataError):
        lines = str(exc).strip().splitlines()
        return lines[0][:_MAX_REASON] if lines else type(exc).__name__
    return type(exc).__name__


def require_columns(
    frame: pd.DataFrame, columns: list[str] | tuple[str, ...], source: Path
) -> None:
    """DatasetError naming ``source`` and the absent columns if any of ``columns`` is missing.

    The message lists the columns found only as :func:`found_columns` allows.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(
            str(source), f"missing column(s) {', '.join(missing)} ({found_columns(frame)})"
        )


def found_columns(frame: pd.DataFrame) -> str:
    """``"found: a, b, c"`` when ``frame``'s header looks like a table's, else a count only.

    A header looks like a table's when it has 2 to 40 names, each at most 40 characters of
    letters, digits and ``_ .()#-`` starting with a letter or ``_``. The first line of a file
    that is no table (a password file, an environment dump, a key) is never quoted.
    """
    names = [str(c) for c in frame.columns]
    if 2 <= len(names) <= _MAX_SHOWN_COLUMNS and all(_COLUMN_NAME.fullmatch(n) for n in names):
        return f"found: {', '.join(names)}"
    return f"found {len(names)} column(s), not listed: the first line is no table header"
