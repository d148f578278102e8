"""A minimal headless Streamlit client: the websocket protocol the browser speaks, enough to
open a page, upload a file through Streamlit's real upload route and read what the page
shows. Used by the load test (no browser needed)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import FileURLsRequest, UploadedFileInfo
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import connect

from tests.e2e.server import REPO, free_port, start_streamlit

__all__ = ["Session", "free_port", "rss_bytes", "start_server"]


def start_server(
    port: int, env: dict[str, str], log_path: Path, *, repo: Path = REPO
) -> subprocess.Popen:
    """``streamlit run app.py`` on ``port`` (XSRF off: this client has no cookie jar)."""
    log = log_path.open("wb")
    try:
        proc, _ = start_streamlit(
            {**os.environ, **env},
            log,
            app_dir=repo,
            port=port,
            args=("--server.enableXsrfProtection", "false"),
        )
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {log_path.read_text(errors='replace')[-2000:]}") from exc
    return proc


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Page:
    headings: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    uploaders: dict[str, str] = field(default_factory=dict)  # label -> widget id


class Session:
    """One browser session over the websocket."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ws = connect(
            f"ws://127.0.0.1:{port}/_stcore/stream",
            subprotocols=["streamlit"],
            max_size=None,
            open_timeout=30,
        ).__enter__()  # entered by hand: closed by close()
        self.session_id = ""
        self.pages: dict[str, str] = {}  # url path -> page script hash

    def close(self) -> None:
        self.ws.close()

    def _send(self, msg: BackMsg) -> None:
        self.ws.send(msg.SerializeToString())

    def _recv(self, timeout: float) -> ForwardMsg:
        msg = ForwardMsg()
        msg.ParseFromString(self.ws.recv(timeout=timeout))
        return msg

    def run(self, page: str = "", widgets: list | None = None, timeout: float = 180) -> Page:
        """Rerun the script on ``page`` (url path, "" = default) and collect what it shows."""
        back = BackMsg()
        back.rerun_script.query_string = ""
        back.rerun_script.page_script_hash = self.pages.get(page, "")
        back.rerun_script.page_name = page
        for w in widgets or []:
            back.rerun_script.widget_states.widgets.append(w)
        self._send(back)
        shown = Page()
        deadline = time.time() + timeout
        while True:
            msg = self._recv(max(1.0, deadline - time.time()))
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.session_id = msg.new_session.initialize.session_id
                for p in msg.new_session.app_pages:
                    self.pages[p.url_pathname] = p.page_script_hash
            elif kind == "navigation":
                for p in msg.navigation.app_pages:
                    self.pages[p.url_pathname] = p.page_script_hash
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                el = msg.delta.new_element
                which = el.WhichOneof("type")
                if which == "heading":
                    shown.headings.append(el.heading.body)
                elif which == "markdown":
                    shown.texts.append(el.markdown.body)
                elif which == "alert":
                    shown.texts.append(el.alert.body)
                    if el.alert.format == 1:  # ERROR
                        shown.errors.append(el.alert.body)
                elif which == "exception":
                    shown.exceptions.append(f"{el.exception.type}: {el.exception.message}")
                elif which == "file_uploader":
                    shown.uploaders[el.file_uploader.label] = el.file_uploader.id
            elif kind == "script_finished":
                return shown

    def upload(self, widget_id: str, name: str, data: bytes, page: str) -> Page:
        """Upload through Streamlit's route (PUT multipart), then rerun with the widget set."""
        return self.run(page, [self.file_state(widget_id, name, data)])

    def file_state(self, widget_id: str, name: str, data: bytes) -> WidgetState:
        """Upload through Streamlit's route (PUT multipart); the uploader's widget state that
        hands the file to the page (several of them: :meth:`run` with all at once)."""
        request_id = uuid.uuid4().hex
        back = BackMsg()
        back.file_urls_request.CopyFrom(
            FileURLsRequest(request_id=request_id, file_names=[name], session_id=self.session_id)
        )
        self._send(back)
        while True:
            msg = self._recv(60)
            kind = msg.WhichOneof("type")
            if kind == "file_urls_response" and msg.file_urls_response.response_id == request_id:
                urls = msg.file_urls_response.file_urls[0]
                break
        url = urls.upload_url
        if url.startswith("/"):
            url = f"http://127.0.0.1:{self.port}{url}"
        files = {"file": (name, data, "application/octet-stream")}
        reply = requests.put(url, files=files, timeout=120)
        reply.raise_for_status()
        state = WidgetState(id=widget_id)
        state.file_uploader_state_value.uploaded_file_info.append(
            UploadedFileInfo(name=name, size=len(data), file_id=urls.file_id, file_urls=urls)
        )
        return state
