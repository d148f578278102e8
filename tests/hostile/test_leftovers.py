"""Issue 12, item 7: nothing left behind by a killed write; training time kept across resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hdcnn.utils import atomic_path, atomic_write_bytes, remove_stale_temporaries

CHILD = """
import sys, time
from hdcnn.utils import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a checkpoint")
    print("ready", flush=True)
    time.sleep(60)
"""


def test_a_killed_writer_leaves_no_tmp_file_after_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / ".last_detector.pt"  # the file name of the report
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    stale = tmp_path / f".{target.name}.tmp-{child.pid}"
    assert stale.is_file()  # a SIGKILL cannot be cleaned up by the dying process itself ...
    atomic_write_bytes(target, b"complete")
    assert not stale.exists()  # ... but the next write of the same file removes it
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_temporaries_of_live_processes_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    mine = tmp_path / f".model.pt.tmp-{os.getppid()}"  # the parent (pytest's shell) is alive
    mine.write_bytes(b"in progress")
    junk = tmp_path / ".model.pt.tmp-notapid"
    junk.write_bytes(b"?")
    assert remove_stale_temporaries(target) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
    assert mine.is_file() and junk.is_file()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hdcnn.data.synth import write_cohort

    root = tmp_path_factory.mktemp("synth")
    write_cohort(root, patients=10, seed=1, size=256)
    return root / "manifest.csv"


def test_training_seconds_of_a_part_finished_earlier_are_kept(cohort: Path, tmp_path: Path) -> None:
    from hdcnn.train.config import TrainConfig
    from hdcnn.train.pipeline import train

    out = tmp_path / "weights"

    def config(**kw: object) -> TrainConfig:
        base = dict(
            dataset="manifest",
            root=cohort,
            out=out,
            epochs=2,
            long_side=128,
            batch_size=16,
            crop_size=32,
            whole_size=(64, 40),
            widths=(8, 16),
            threads=1,
            cache_dir=out / "cache",
            progress=False,
            parts=("whole-flat",),
        )
        base.update(kw)
        return TrainConfig(**base)  # type: ignore[arg-type]

    train(config())
    first = json.loads((out / "cascade.json").read_text())["training"]["parts"]["whole-flat"]
    assert first["seconds"] > 0
    train(config(resume=True))  # a later process: the part is already finished
    again = json.loads((out / "cascade.json").read_text())["training"]["parts"]["whole-flat"]
    assert again["seconds"] >= first["seconds"]  # was reset to ~0 before
    assert again["seconds"] < first["seconds"] + 5
    assert again["seconds_per_epoch"] == first["seconds_per_epoch"]
    assert again["resumed_epochs"] == 2 and again["epochs_this_run"] == 0
