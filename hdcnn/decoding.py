"""Decoder plumbing shared by :mod:`hdcnn.reader` and :mod:`hdcnn.dicom` (no import circle).

- Decoder noise: messages of C decoders on stderr (libpng, libjpeg, OpenCV, OpenJPEG) and
  pydicom warnings/log records are captured while a file is decoded
  (:func:`decoder_stderr`, :func:`quiet_warnings`); damage is refused, anything else is logged
  as one line naming the file.
- :func:`scale_to_unit`: any numeric pixel array to float32 ``[0, 1]``.
- :func:`short_reason`: one line for an exception, for error messages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator

import numpy as np

from hdcnn.errors import MammogramError

logger = logging.getLogger("hdcnn.reader")  # the reader's messages, whichever module decodes

#: Decoder messages that mean the data is damaged (the image would be incomplete or wrong).
_DAMAGE = re.compile(
    r"premature end|not enough data|truncat|corrupt|crc error|extraneous bytes|unexpected end|"
    r"too short|less than expected|insufficient data|incomplete|huffman|data error|"
    r"decompression error|read error|invalid (?:sos|scan|marker|stream|code)|bogus|"
    r"end of (?:file|stream|data)|broken",
    re.IGNORECASE,
)


# ----------------------------------------------------------------------------- decoder noise


_CAPTURE = threading.local()
_STDERR_LOCK = threading.Lock()
_QUIET_LOGGERS = ("pydicom", "pylibjpeg", "openjpeg", "libjpeg", "jpeg_ls", "PIL")


class _CaptureFilter(logging.Filter):
    """Drops the records of decoder libraries logged by a thread that is reading a file, and
    keeps their first line as a note of that read."""

    def filter(self, record: logging.LogRecord) -> bool:
        sink = getattr(_CAPTURE, "sink", None)
        if sink is None:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed log call in a decoder
            text = str(record.msg)
        sink.append(text.strip().splitlines()[0] if text.strip() else record.levelname)
        return False


_FILTER = _CaptureFilter()


def _install_log_filters() -> None:
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _QUIET_LOGGERS]
    for logger_name in {*names, *_QUIET_LOGGERS}:
        lg = logging.getLogger(logger_name)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)


#: What C decoders write on stderr (libjpeg, libpng, libtiff, OpenJPEG, OpenCV's log); any
#: other line written meanwhile (another thread's log record) is passed through unchanged.
_DECODER_LINE = re.compile(
    r"^(libpng|libtiff|TIFF|[A-Za-z]*TIFF[A-Za-z]*:|Corrupt JPEG|Premature end|Invalid |"
    r"Bogus |Unsupported |Huffman |Quantization table|Not a JPEG|Wrong JPEG|Empty (JPEG|input)|"
    r"Didn't expect|Inconsistent progression|Backing store|Maximum supported|Image too |"
    r"Application transferred|JPEG|OpenJPEG|openjpeg|\[ ?(WARN|ERROR|INFO|DEBUG|FATAL)\b|"
    r"\[(WARNING|ERROR|INFO)\]|libjpeg|charls|CharLS)"
)

#: First line of a Rust panic report (``pylibjpeg-rle`` on damaged RLE data).
_RUST_PANIC = re.compile(r"^thread '.*' panicked at ")


@contextlib.contextmanager
def decoder_stderr() -> Iterator[None]:
    """Capture what a C decoder writes to file descriptor 2 during the block.

    Decoder lines (:data:`_DECODER_LINE`) become notes of the file being read (see
    :func:`_decoder_messages`; logged as one warning when no file is being read); any other
    line (another thread's output in a server) is written back to stderr. Serialised by a
    lock, held only while a decoder runs.
    """
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            read_end, write_end = os.pipe()
        except (OSError, ValueError, AttributeError):
            yield
            return
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                block = os.read(read_end, 65536)
                if not block:
                    return
                chunks.append(block)

        reader = threading.Thread(target=drain, name="hdcnn-stderr", daemon=True)
        reader.start()
        os.dup2(write_end, 2)
        os.close(write_end)
        try:
            yield
        finally:
            os.dup2(saved, 2)  # closes the pipe's last write end: the reader sees EOF
            reader.join(5.0)
            os.close(read_end)
            text = b"".join(chunks).decode("utf-8", "replace")
            passed: list[str] = []
            notes: list[str] = []
            lines = text.splitlines(keepends=True)
            for i, line in enumerate(lines):
                if _RUST_PANIC.match(line.strip()):
                    # a Rust decoder's panic report (message, then maybe a backtrace): one
                    # note; the decoder raised, so nothing of it follows the report
                    notes.append("decoder panic: " + (lines[i + 1] if i + 1 < len(lines) else ""))
                    if passed and not passed[-1].strip():
                        passed.pop()  # the blank line Rust prints before the report
                    break
                (notes if _DECODER_LINE.match(line.strip()) else passed).append(line)
            if passed:
                with contextlib.suppress(OSError):
                    os.write(saved, "".join(passed).encode("utf-8", "replace"))
            os.close(saved)
            sink = getattr(_CAPTURE, "sink", None)
            cleaned = [n.strip() for n in notes if n.strip()]
            if sink is not None:
                sink.extend(cleaned)
            elif cleaned:
                logger.warning("decoder message: %s", _clip(cleaned[0]))


_WARN_LOCK = threading.Lock()
_WARN_STATE: dict = {"depth": 0, "saved": None}


def _route_warning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    """``warnings.showwarning`` while any thread reads a file: a warning raised by a reading
    thread becomes a note of that read (or is dropped inside :func:`quiet_warnings`); any
    other thread's warning is shown as usual."""
    if getattr(_CAPTURE, "mute", 0):
        return
    sink = getattr(_CAPTURE, "sink", None)
    if sink is not None:
        text = str(message).strip()
        sink.append(text.splitlines()[0] if text else category.__name__)
        return
    saved = _WARN_STATE["saved"]
    show = saved[1] if saved is not None else warnings._showwarning_orig  # type: ignore[attr-defined]
    show(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def _warnings_routed() -> Iterator[None]:
    """Route warnings through :func:`_route_warning` (every occurrence) during the block.

    Thread-safe, unlike ``warnings.catch_warnings``: the first reading thread installs the
    routing, the last one to leave restores the previous filters and ``showwarning``.
    """
    with _WARN_LOCK:
        if _WARN_STATE["depth"] == 0:
            _WARN_STATE["saved"] = (warnings.filters, warnings.showwarning)
            warnings.filters = [("always", None, Warning, None, 0), *warnings.filters]
            getattr(warnings, "_filters_mutated", lambda: None)()
            warnings.showwarning = _route_warning
        _WARN_STATE["depth"] += 1
    try:
        yield
    finally:
        with _WARN_LOCK:
            _WARN_STATE["depth"] -= 1
            if _WARN_STATE["depth"] == 0:
                filters, show = _WARN_STATE["saved"]
                _WARN_STATE["saved"] = None
                warnings.filters = filters
                getattr(warnings, "_filters_mutated", lambda: None)()
                if warnings.showwarning is _route_warning:
                    warnings.showwarning = show


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Drop the warnings this thread raises during the block (expected, harmless ones)."""
    _CAPTURE.mute = getattr(_CAPTURE, "mute", 0) + 1
    try:
        with _warnings_routed():
            yield
    finally:
        _CAPTURE.mute -= 1


@contextlib.contextmanager
def _decoder_messages() -> Iterator[list[str]]:
    """Collect, and keep off the console, what decoders say while one file is read.

    Yields a list that holds, once the block has ended, the warnings and decoder-library
    log records emitted by this thread in the block and the decoder lines written to
    stderr by :func:`decoder_stderr` blocks inside it (first line of each).
    """
    notes: list[str] = []
    _install_log_filters()
    previous = getattr(_CAPTURE, "sink", None)
    _CAPTURE.sink = notes
    try:
        with _warnings_routed():
            yield notes
    finally:
        _CAPTURE.sink = previous


def _judge_decoder_messages(notes: list[str], label: str) -> None:
    """Refuse an image whose decoder reported damage; log any other message once."""
    unique = list(dict.fromkeys(n for n in notes if n))
    damage = [n for n in unique if _DAMAGE.search(n)]
    if damage:
        raise MammogramError(
            label, f"damaged image data: the decoder reported {_clip(damage[0])!r}"
        )
    if unique:
        more = f" (and {len(unique) - 1} more)" if len(unique) > 1 else ""
        logger.warning("%s: decoder message: %s%s", label, _clip(unique[0]), more)


def _clip(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def short_reason(exc: BaseException) -> str:
    """One line for an exception: its first line of text (at most 160 characters) or its type."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def scale_to_unit(
    values: np.ndarray,
    source: str,
    *,
    low: float | None = None,
    high: float | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """``values`` scaled linearly from ``[low, high]`` to ``[0, 1]`` (clipped), as float32.

    Args:
        values: any real array (integer or float), e.g. ``(H, W)``.
        source: name for error messages.
        low, high: the range mapped to 0 and 1; default the array's own min and max.
        inplace: ``values`` is a float32 array the caller no longer needs: scale it in place
            (no second full-size array).

    Returns:
        A float32 array of the same shape (``values`` itself when ``inplace``).

    Raises:
        MammogramError: non-finite values, a range too narrow or too wide for float32, or a
            constant image when the range is the array's own.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "uifb":
        raise MammogramError(source, f"pixel values of type {arr.dtype} are not numbers")
    # min and max propagate NaN and show infinities: no full-size boolean temporary
    lowest, highest = float(arr.min()), float(arr.max())
    if not (np.isfinite(lowest) and np.isfinite(highest)):
        raise MammogramError(source, "image contains non-finite values")
    if low is None or high is None:
        low, high = lowest, highest
        if high <= low:
            raise MammogramError(source, "image is constant (every pixel has the same value)")
    low, high = float(low), float(high)
    span = high - low
    scale = 1.0 / span if span > 0 else float("inf")
    if not (np.isfinite(span) and span > 0 and np.isfinite(np.float32(scale)) and scale > 0):
        raise MammogramError(
            source, f"pixel value range {low:g}..{high:g} cannot be scaled to [0, 1]"
        )
    if not (np.isfinite(np.float32(low)) and np.isfinite(np.float32(high))):
        raise MammogramError(source, f"pixel values {low:g}..{high:g} exceed the float32 range")
    if inplace and arr.dtype == np.float32 and arr.flags.writeable:
        out = arr
    else:
        out = arr.astype(np.float32)  # integers up to 2**24 are exact in float32
    out -= np.float32(low)
    out *= np.float32(scale)
    np.clip(out, 0.0, 1.0, out=out)
    if not (np.isfinite(out.min()) and np.isfinite(out.max())):
        raise MammogramError(source, f"pixel value range {low:g}..{high:g} gives non-finite values")
    return out
