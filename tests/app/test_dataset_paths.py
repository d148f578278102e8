"""The Dataset explorer, driven as a visitor would (AppTest): it opens only folders inside the
operator's data roots (``HDCNN_DATA_ROOTS``) and refuses every other path with one message
that quotes nothing from the server."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from hdcnn.data.roots import DATA_ROOTS_ENV, REFUSAL

APP = Path(__file__).resolve().parents[2] / "app.py"
SECRET = "hunter2"
LABELS = ("normal", "benign", "malignant", "normal")


def _folder_dataset(folder: Path, *, age: str = "50") -> Path:
    """A ``folder`` dataset of four small PNG films with their ``labels.csv``."""
    (folder / "img").mkdir(parents=True)
    rows = ["image_path,label,patient_id,view,laterality,age"]
    rng = np.random.default_rng(0)
    for i, label in enumerate(LABELS):
        cv2.imwrite(str(folder / "img" / f"{i}.png"), rng.integers(0, 255, (64, 48), np.uint8))
        rows.append(f"img/{i}.png,{label},p{i // 2},CC,{'LR'[i % 2]},{age}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture()
def server_files(tmp_path: Path, app_env: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A data root holding a dataset, and beside it a valid dataset and files never offered."""
    root = tmp_path / "data-root"
    _folder_dataset(root / "films")
    outside = _folder_dataset(tmp_path / "private", age=SECRET)  # loads if ever opened
    (outside / "shadow").write_text(f"root:$6${SECRET}:19000:0:99999:7:::\n")
    (root / "escape").symlink_to(outside)  # a link inside the root leading out
    monkeypatch.setenv(DATA_ROOTS_ENV, str(root))
    return {"root": root, "outside": outside}


def _explorer() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("pages/dataset.py").run()
    at.selectbox(key="dataset_name").set_value("folder").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _shown(at: AppTest) -> str:
    parts = [e.value for e in at.error] + [i.value for i in at.info] + [w.value for w in at.warning]
    parts += [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [m.label for m in at.metric] + [s.label for s in at.status]
    return "\n".join(str(p) for p in parts)


def test_every_path_outside_the_roots_gets_the_same_refusal(server_files: dict) -> None:
    root, outside = server_files["root"], server_files["outside"]
    attempts = [
        "/proc/self/environ",
        "/etc/shadow",
        "/etc",
        str(outside),  # a valid dataset outside the roots
        str(outside / "shadow"),
        str(outside / "labels.csv"),
        f"{root}/../{outside.name}",  # `..` leaving the root
        f"../{outside.name}",
        f"films/../../{outside.name}",
        "escape",  # a link inside the root pointing out
        str(root / "escape"),
        str(root / "films" / "labels.csv"),  # a file, not a folder
        str(root / "nowhere"),  # nonexistent, inside and outside
        "/nowhere/at/all",
    ]
    at = _explorer()
    for path in attempts:
        at.text_input(key="dataset_root").input(path).run()
        assert not at.exception, (path, [e.message for e in at.exception])
        assert [e.value for e in at.error] == [f"dataset folder: {REFUSAL}"], path
        assert not at.metric and not at.dataframe and not at.get("plotly_chart"), path
        shown = _shown(at)
        assert SECRET not in shown and "root:" not in shown and "PATH=" not in shown, path


def test_a_folder_inside_a_root_is_explored(server_files: dict) -> None:
    root = server_files["root"]
    at = _explorer()
    assert str(root) in _shown(at)  # the visitor is told where datasets live
    for path in (str(root / "films"), "films", f"{root}/films/img/.."):
        at.text_input(key="dataset_root").input(path).run()
        assert not at.exception, [e.message for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        metrics = {m.label: m.value for m in at.metric}
        assert (metrics["Images"], metrics["Patients"]) == ("4", "2"), path
        assert len(at.dataframe[0].value) == 4


def test_images_listed_outside_the_roots_are_left_out(server_files: dict) -> None:
    root, outside = server_files["root"], server_files["outside"]
    films = root / "films"
    (films / "img" / "link.png").symlink_to(outside / "img" / "0.png")
    with (films / "labels.csv").open("a") as fh:  # three rows reaching out of the root
        fh.write(f"{outside}/img/1.png,benign,q1,CC,L,77\n")
        fh.write("../../private/img/2.png,benign,q2,CC,L,77\n")
        fh.write("img/link.png,benign,q3,CC,L,77\n")
    at = _explorer()
    at.text_input(key="dataset_root").input("films").run()
    assert not at.exception, [e.message for e in at.exception]
    assert [w.value for w in at.main.warning] == [
        "3 listed image(s) lie outside the data roots and are left out."
    ]
    assert {m.label: m.value for m in at.metric}["Images"] == "4"
    table = at.dataframe[0].value
    assert sorted(table["file"]) == ["0.png", "1.png", "2.png", "3.png"]
    assert set(table["age"]) == {"50"} and not set(table["patient #"].astype(str)) - {"1", "2"}


def test_a_bad_dataset_inside_a_root_names_the_file_not_its_contents(
    server_files: dict,
) -> None:
    bad = server_files["root"] / "notes"
    bad.mkdir()
    (bad / "labels.csv").write_text(f"PYTHONPATH=/srv\0TOKEN={SECRET}\0\n")
    at = _explorer()
    at.text_input(key="dataset_root").input("notes").run()
    assert len(at.error) == 1 and "labels.csv" in at.error[0].value
    assert "missing column(s) image_path, label" in at.error[0].value
    assert SECRET not in _shown(at)


def test_without_data_roots_only_the_demo_data_is_offered(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_ROOTS_ENV, raising=False)
    at = _explorer()
    assert not at.text_input and not at.error
    shown = _shown(at)
    assert DATA_ROOTS_ENV in shown and "only the built-in demo data can be explored" in shown
