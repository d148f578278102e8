"""Issue 12, item 3: an upload through Streamlit's own upload route never touches the disk.

Streamlit 1.67 serves ``PUT /_stcore/upload_file/<session>/<file>`` with Starlette, whose
multipart parser spools any part over 1 MB to a temporary file. ``appkit`` turns spooling
off when it is imported; this test drives Streamlit's real route (an ASGI call, no network)
with a 3 MB upload holding a planted identifier and watches every way a temporary file
could be made.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest

PLANTED = b"ZZSECRET-4711-UPLOAD"


class _Runtime:
    def is_active_session(self, session_id: str) -> bool:
        return True


def _multipart(data: bytes, boundary: str = "hdcnnboundary") -> tuple[bytes, str]:
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="scan.dcm"\r\n'
            "Content-Type: application/dicom\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _put(app: Any, path: str, body: bytes, content_type: str) -> int:
    sent: list[dict] = []
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]

    async def receive() -> dict:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"host", b"localhost"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8501),
    }
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


@pytest.fixture()
def upload_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    from starlette.applications import Starlette
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.web.server.starlette import starlette_routes

    monkeypatch.setattr(starlette_routes, "is_xsrf_enabled", lambda: False)
    create_upload_routes = starlette_routes.create_upload_routes
    manager = MemoryUploadedFileManager("/_stcore/upload_file")
    app = Starlette(routes=create_upload_routes(_Runtime(), manager, None))
    return app, manager


def _watch_temp_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    made: list[str] = []
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        original = getattr(tempfile, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            made.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, spy)
    return made


def test_streamlit_upload_route_keeps_a_3_mb_upload_in_memory(
    upload_app: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from starlette.formparsers import MultiPartParser

    import appkit  # noqa: F401  (the app's import turns spooling off)

    assert MultiPartParser.spool_max_size == 0
    app, manager = upload_app
    data = PLANTED + bytes(range(256)) * (3 * 4096)  # ~3 MB, over the 1 MB spool limit
    made = _watch_temp_files(monkeypatch, tmp_path)
    body, content_type = _multipart(data)
    status = _put(app, "/_stcore/upload_file/session-1/file-1", body, content_type)
    assert status == 204
    assert made == []  # no temporary file was created, not even an unnamed one
    assert list(tmp_path.iterdir()) == []
    (stored,) = manager.get_files("session-1", ["file-1"])
    assert stored.data == data


def test_without_the_setting_streamlit_would_spool_to_disk(
    upload_app: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the issue saw (strace: the upload written to /tmp), kept as a check that the
    test above watches the right thing."""
    from starlette.formparsers import MultiPartParser

    monkeypatch.setattr(MultiPartParser, "spool_max_size", 1024 * 1024)
    app, _ = upload_app
    made = _watch_temp_files(monkeypatch, tmp_path)
    body, content_type = _multipart(PLANTED + bytes(3 << 20))
    assert _put(app, "/_stcore/upload_file/session-1/file-2", body, content_type) == 204
    assert made  # rolled over to a temporary file
