"""Test helper: a private Orthanc server (Debian package ``orthanc`` with its DICOMweb plugin,
``orthanc-dicomweb``) on a free loopback port, with a temporary storage folder and config."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.e2e.server import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc/plugins"))
START_TIMEOUT_S = 60.0


def dicomweb_plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


@contextmanager
def orthanc_server(folder: Path) -> Iterator[str]:
    """Start Orthanc on a free loopback port; yield its base URL; stop it afterwards.

    Skips the test (with the reason) where Orthanc or its DICOMweb plugin is missing.
    """
    if not Path(ORTHANC).is_file():
        pytest.skip("Orthanc not installed (Debian package orthanc)")
    plugin = dicomweb_plugin()
    if plugin is None:
        pytest.skip("Orthanc's DICOMweb plugin not installed (Debian package orthanc-dicomweb)")
    port = free_port()
    storage = folder / "storage"
    storage.mkdir(parents=True)
    config = {
        "Name": "hdcnn-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "DicomPort": free_port(),
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    proc = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Orthanc exited ({proc.returncode}): see {folder / 'orthanc.log'}")
            try:
                if requests.get(f"{url}/system", timeout=2).ok:
                    break
            except requests.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not start in {START_TIMEOUT_S:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def upload(url: str, data: bytes) -> None:
    """Store one DICOM file through Orthanc's REST API."""
    answer = requests.post(f"{url}/instances", data=data, timeout=60)
    answer.raise_for_status()


def instance_count(url: str) -> int:
    return int(requests.get(f"{url}/statistics", timeout=10).json()["CountInstances"])
