"""``streamlit run app.py`` on a free local port, for the browser test, the load test and
``benchmarks/bench_app.py`` (one launcher; no browser or websocket dependency)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_streamlit(
    env: Mapping[str, str],
    log: IO[Any] | int = subprocess.DEVNULL,
    *,
    app_dir: Path = REPO,
    port: int | None = None,
    args: Sequence[str] = (),
    timeout_s: float = 90.0,
) -> tuple[subprocess.Popen, str]:
    """Start the app headless on ``127.0.0.1`` and wait until its health check answers.

    Args:
        env: the server's whole environment.
        log: where its output goes (an open file, or ``subprocess.DEVNULL``).
        app_dir: the checkout whose ``app.py`` runs.
        port: the port (a free one by default).
        args: further ``streamlit run`` options.

    Returns:
        ``(process, base url)``.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout_s``.
    """
    port = free_port() if port is None else port
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", *args,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=app_dir, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    code = proc.poll()
    proc.kill()
    proc.wait()
    raise RuntimeError(f"streamlit did not start (exit code {code})")
