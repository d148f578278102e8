"""``torchrun --nproc_per_node=2 -m hdcnn cv`` (gloo) on a SYNTHETIC cohort: the detectors train
in DDP, candidates and crop features are sharded, rank 0 alone writes and reports; killed
mid-fold it resumes to a complete report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train.processes import communicate_or_kill, kill_tree

REPO = Path(__file__).resolve().parents[2]
#: cv options of every run here: a tiny, fast recipe
TINY = ["--dataset", "manifest", "--folds", "2", "--det-epochs", "1", "--long-side", "128"]
WHOLE = ("flat-whole", "hier-whole")  # no detector: the same numbers on any number of ranks
DETECTED = ("det-flat", "det-hier")


def _cv(cohort: Path, out: Path, *, ranks: int) -> subprocess.Popen[str]:
    """Start ``[torchrun --nproc_per_node=RANKS] -m hdcnn cv`` in its own process group."""
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
        if ranks > 1
        else []
    )
    cmd = [sys.executable, *launcher, "-m", "hdcnn", "cv", *TINY]
    cmd += ["--root", str(cohort), "--out", str(out), "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    output, _ = communicate_or_kill(proc, 600)
    assert proc.returncode == 0, output[-3000:]
    return output


def _report(out: Path) -> dict:
    return json.loads((out / "cv_report.json").read_text())


@pytest.fixture(scope="module")
def two_ranks(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted two-rank run."""
    out = tmp_path_factory.mktemp("two") / "run"
    output = _finish(_cv(cohort, out, ranks=2))
    assert "wrote " in output
    return out


@pytest.mark.slow
def test_two_ranks_give_the_figures_of_one(cohort: Path, two_ranks: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    _finish(_cv(cohort, one, ranks=1))
    a, b = _report(one), _report(two_ranks)
    assert b["n_images"] == a["n_images"] == 32
    # whole-image concepts use no detector: sharded features give exactly the same figures
    for name in WHOLE:
        assert b["concepts"][name] == a["concepts"][name]
    # the detectors were trained by DDP (2 x 2 images per step, half the steps): the detector
    # concepts move within training noise; every image is still scored once, out of fold
    for name in DETECTED:
        assert b["concepts"][name]["n_images"] == 32
        assert abs(b["concepts"][name]["auc_abnormal"] - a["concepts"][name]["auc_abnormal"]) < 0.3
    summary = json.loads((two_ranks / "fold0/detector.json").read_text())
    assert summary["n_train"] == json.loads((one / "fold0/detector.json").read_text())["n_train"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_killed_mid_fold_it_resumes_to_a_complete_report(
    cohort: Path, two_ranks: Path, tmp_path: Path
) -> None:
    """Killed (every process, SIGKILL) once fold 0's detector is on disk, then started again:
    a complete report, the same as the uninterrupted run's (every stage is deterministic given
    the detectors, and DDP on gloo is deterministic)."""
    killed = tmp_path / "killed"
    proc = _cv(cohort, killed, ranks=2)
    deadline = time.monotonic() + 600
    while not (killed / "fold0/detector.pt").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "never reached fold 0"
        time.sleep(0.1)
    kill_tree(proc.pid)
    proc.communicate()
    assert not (killed / "fold1/detector.pt").exists()
    assert not (killed / "cv_report.json").exists()
    _finish(_cv(cohort, killed, ranks=2))
    c, b = _report(killed), _report(two_ranks)
    for key in ("concepts", "thresholds", "lesion_types"):
        assert c[key] == b[key]
