"""hdcnn.data.roots: a visitor's folder is opened only inside the operator's data roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hdcnn.data.manifest import ImageRecord, Manifest
from hdcnn.data.roots import (
    DATA_ROOTS_ENV,
    REFUSAL,
    data_roots,
    images_inside,
    resolve_dataset_folder,
)
from hdcnn.errors import DatasetError
from hdcnn.terms import Label

MESSAGE = f"dataset folder: {REFUSAL}"


@pytest.fixture()
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``root`` (the data root) holding ``ds/`` and a file; ``outside`` beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "ds" / "sub").mkdir(parents=True)
    (root / "ds" / "labels.csv").write_text("image_path,label\n")
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET=hunter2\n")
    return root, outside


def test_data_roots_reads_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: tuple[Path, Path]
) -> None:
    root, outside = layout
    link = tmp_path / "link-to-root"
    link.symlink_to(root)
    value = os.pathsep.join(["", str(root), str(tmp_path / "missing"), str(link), str(outside)])
    monkeypatch.setenv(DATA_ROOTS_ENV, value)
    # links resolved, duplicates and missing folders dropped, order kept
    assert data_roots() == (root.resolve(), outside.resolve())
    assert data_roots(str(root / "ds" / "labels.csv")) == ()  # a file is no root
    monkeypatch.delenv(DATA_ROOTS_ENV)
    assert data_roots() == ()


def test_folders_inside_a_root_are_opened(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    roots = data_roots(str(root))
    ds = (root / "ds").resolve()
    assert resolve_dataset_folder(str(root / "ds"), roots) == ds
    assert resolve_dataset_folder("ds", roots) == ds  # relative to a root
    assert resolve_dataset_folder(f"  {root}/ds/sub/..  ", roots) == ds  # `..` staying inside
    assert resolve_dataset_folder(str(root), roots) == root.resolve()
    inner = root / "alias"
    inner.symlink_to(root / "ds" / "sub")  # a link that stays inside is followed
    assert resolve_dataset_folder("alias", roots) == (root / "ds" / "sub").resolve()


def test_a_later_root_is_tried_for_a_relative_path(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    (outside / "other").mkdir()
    roots = data_roots(os.pathsep.join([str(root), str(outside)]))
    assert resolve_dataset_folder("other", roots) == (outside / "other").resolve()


def test_every_other_path_gets_the_same_refusal(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    root, outside = layout
    (root / "escape").symlink_to(outside)  # a link out of the root
    (root / "loop").symlink_to(root / "loop")
    roots = data_roots(str(root))
    refused = [
        "",
        "   ",
        str(outside),  # an existing folder outside
        str(outside / "secret.txt"),  # a file outside
        str(root / "ds" / "labels.csv"),  # a file inside
        str(root / "nowhere"),  # nonexistent inside
        str(tmp_path / "nowhere"),  # nonexistent outside
        f"{root}/../outside",  # `..` leaving the root
        "../outside",
        "ds/../../outside",
        "escape",
        str(root / "escape"),
        "loop",
        "/proc/self/environ",
        "/etc",
        "/",
        "ds\0",
        "x" * 5000,
    ]
    messages = set()
    for path in refused:
        with pytest.raises(DatasetError) as info:
            resolve_dataset_folder(path, roots)
        messages.add(str(info.value))
    assert messages == {MESSAGE}
    assert "hunter2" not in MESSAGE and str(outside) not in MESSAGE


def test_no_roots_refuses_everything(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    for path in (str(root), str(root / "ds"), "ds"):
        with pytest.raises(DatasetError, match="refused"):
            resolve_dataset_folder(path, ())


def test_images_outside_the_roots_are_left_out(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    (outside / "x.png").write_bytes(b"")
    (root / "ds" / "in.png").write_bytes(b"")
    (root / "ds" / "link.png").symlink_to(outside / "x.png")
    paths = ["in.png", "sub/../in.png", str(outside / "x.png"), "../../outside/x.png", "link.png"]
    records = [ImageRecord(p, p, p, None, None, None, None, Label.NORMAL) for p in paths]
    manifest = Manifest(records, root=root / "ds")
    kept, dropped = images_inside(manifest, data_roots(str(root)))
    assert [r.image_path for r in kept] == ["in.png", "sub/../in.png"] and dropped == 3
    assert kept.root == manifest.root and len(manifest) == 5  # the input is unchanged
