"""Two CPU processes under torchrun (gloo): the same `python -m hdcnn train` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hdcnn.checkpoint import load_model
from hdcnn.train.config import PARTS
from tests.train.processes import communicate_or_kill

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hdcnn.data.synth import write_cohort

    root = tmp_path_factory.mktemp("synth_ddp")
    write_cohort(root, patients=10, seed=2, size=256)
    return root / "manifest.csv"


def _torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``torchrun --standalone --nproc_per_node=2 -m hdcnn train ARGS``; kill on timeout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "hdcnn",
        "train",
        *args,
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stdout, stderr = communicate_or_kill(proc, 240)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def test_two_processes_one_epoch(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "weights"
    parts = "detector,c1,c2,whole-abnormal"
    proc = _torchrun(
        [
            "--dataset",
            "manifest",
            "--root",
            str(cohort),
            "--out",
            str(out),
            "--parts",
            parts,
            "--epochs",
            "1",
            "--long-side",
            "128",
            "--crop-size",
            "32",
            "--whole-size",
            "64",
            "40",
            "--threads",
            "1",
            "--no-progress",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for part in parts.split(","):
        file = PARTS[part][0]
        _model, ckpt = load_model(out / file)
        assert ckpt["extra"]["part"] == part
    config = json.loads((out / "cascade.json").read_text())
    assert set(config["files"]) == {PARTS[p][0] for p in parts.split(",")}
    # only rank 0 prints the summary and logs progress
    assert proc.stdout.count('"detector"') == 1
    assert proc.stderr.count("detector epoch 1/1") == 1
