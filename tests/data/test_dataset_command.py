"""``python -m hdcnn dataset ...`` run in-process through :func:`hdcnn.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hdcnn import cli
from hdcnn.data.manifest import Manifest


@pytest.fixture(autouse=True)
def only_dataset_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse with the dataset command alone, independent of the other commands' modules."""
    monkeypatch.setattr(cli, "COMMANDS", {"dataset": "dataset"})


def test_stats_on_mias(mias_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "s.json"
    assert (
        cli.main(
            ["dataset", "stats", "--dataset", "mias", "--root", str(mias_root), "--json", str(out)]
        )
        == 0
    )
    stats = json.loads(out.read_text())
    assert stats["images"] == 242 and stats["patients"] == 121
    assert stats["labels"]["normal"] == 158
    printed = capsys.readouterr().out
    assert "images        242" in printed and "patients      121" in printed
    assert "normal 158" in printed


def test_manifest_written_and_loadable(mias_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "manifest.csv"
    assert (
        cli.main(
            [
                "dataset",
                "manifest",
                "--dataset",
                "mias",
                "--root",
                str(mias_root),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    manifest = Manifest.load_csv(out)
    assert len(manifest) == 242
    assert all(manifest.resolve(r).is_file() for r in manifest)


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["dataset", "stats", "--dataset", "nope", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset" in err and "mias" in err
    assert (
        cli.main(
            [
                "dataset",
                "manifest",
                "--dataset",
                "mias",
                "--root",
                str(tmp_path),
                "--out",
                str(tmp_path / "m.csv"),
            ]
        )
        == 2
    )
    assert "Info.txt" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_cache_arguments_reach_build_cache(
    mias_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import hdcnn.data.cache as cache

    calls = []

    def fake_build_cache(
        manifest: Manifest, out_dir: object, *, long_side: int, workers: int
    ) -> dict:
        calls.append((len(manifest), Path(str(out_dir)), long_side, workers))
        return {"written": len(manifest), "skipped": 0, "failed": [], "cache_dir": str(out_dir)}

    monkeypatch.setattr(cache, "build_cache", fake_build_cache)
    args = [
        "dataset",
        "cache",
        "--dataset",
        "mias",
        "--root",
        str(mias_root),
        "--out",
        str(tmp_path / "c"),
    ]
    assert cli.main([*args, "--long-side", "256", "--workers", "1"]) == 0
    assert cli.main(args) == 0
    assert calls == [(242, tmp_path / "c", 256, 1), (242, tmp_path / "c", 1024, 2)]
    assert '"written": 242' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main([*args, "--workers", "0"])


def test_cache_end_to_end_on_two_mias_images(mias_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "labels.csv").write_text(
        "image_path,label,patient_id\n"
        f"{mias_root / 'mdb005.pgm'},benign,3\n{mias_root / 'mdb006.pgm'},normal,3\n"
    )
    out = tmp_path / "cache"
    args = ["dataset", "cache", "--dataset", "folder", "--root", str(root), "--out", str(out)]
    assert cli.main([*args, "--long-side", "128", "--workers", "1"]) == 0
    cached = Manifest.load_csv(out / "manifest.csv")
    assert len(cached) == 2 and {r.label for r in cached} == {"benign", "normal"}
