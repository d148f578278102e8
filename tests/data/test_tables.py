"""Dataset errors name files, rows and columns, never what a file holds (hdcnn.data.tables)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hdcnn.data.adapters import load_dataset
from hdcnn.data.manifest import Lesion, Manifest
from hdcnn.data.tables import found_columns, read_csv, require_columns
from hdcnn.errors import DatasetError

SECRET = "hunter2"
#: Files that are not tables, each holding SECRET: an environment dump (NUL-separated, as
#: /proc/self/environ), a password file line, a lone key, a key over two lines, a header-like
#: line of secrets, a bad UTF-8 file, an unterminated quote.
SECRET_FILES: dict[str, bytes] = {
    "environ": f"PYTHONPATH=/srv\0API_TOKEN={SECRET}\0HOME=/root\0".encode(),
    "shadow": f"root:$6${SECRET}$Zx9q:19000:0:99999:7:::\nbin:*:19000::::::\n".encode(),
    "key": f"{SECRET}_sk_live_0123456789\n".encode(),
    "pem": f"-----BEGIN KEY-----\n{SECRET}\n-----END KEY-----\n".encode(),
    "header-like": f"user password: {SECRET}, another=value, x\n1,2,3\n".encode(),
    "latin-1": f"name\xe9,{SECRET}\n".encode("latin-1"),
    "quote": f'"{SECRET},a\nb,c\n'.encode(),
}


def _never_quotes(exc: BaseException, secret: str = SECRET) -> None:
    assert isinstance(exc, DatasetError), repr(exc)
    assert secret.lower() not in str(exc).lower(), str(exc)


@pytest.mark.parametrize("kind", list(SECRET_FILES))
def test_folder_given_a_secret_file_never_quotes_it(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(SECRET_FILES[kind])
    with pytest.raises(DatasetError) as info:
        load_dataset("folder", path)
    _never_quotes(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("folder", "labels.csv"),
        ("cbis-ddsm", "mass_case_description_train_set.csv"),
        ("vindr", "breast-level_annotations.csv"),
        ("rsna", "train.csv"),
        ("inbreast", "INbreast.csv"),
        ("inbreast", "INbreast.xls"),
        ("cmmd", "CMMD_clinicaldata_revision.xlsx"),
        ("synth", "manifest.csv"),
        ("mias", "Info.txt"),
    ],
)
@pytest.mark.parametrize("kind", ["environ", "shadow", "header-like", "latin-1", "quote"])
def test_every_adapter_never_quotes_its_table(
    tmp_path: Path, name: str, table: str, kind: str
) -> None:
    (tmp_path / table).write_bytes(SECRET_FILES[kind])
    with pytest.raises(DatasetError) as info:
        load_dataset(name, tmp_path)
    _never_quotes(info.value)


@pytest.mark.parametrize(
    ("table", "head"),
    [
        ("CMMD_clinicaldata_revision.xlsx", b"PK\x03\x04"),  # a damaged zip: BadZipFile
        ("INbreast.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),  # a damaged OLE2: CompDocError
    ],
)
def test_a_damaged_excel_table_is_a_dataset_error(tmp_path: Path, table: str, head: bytes) -> None:
    (tmp_path / table).write_bytes(head + SECRET.encode() * 10)
    name = "cmmd" if table.endswith("xlsx") else "inbreast"
    with pytest.raises(DatasetError, match="not a readable Excel table") as info:
        load_dataset(name, tmp_path)
    _never_quotes(info.value)


def test_proc_self_environ_and_etc_shadow_are_never_quoted() -> None:
    environ = Path("/proc/self/environ")
    if not environ.is_file():
        pytest.skip("no /proc/self/environ")
    values = [v.split("=", 1)[-1] for v in environ.read_bytes().decode(errors="ignore").split("\0")]
    with pytest.raises(DatasetError) as info:
        load_dataset("folder", environ)
    message = str(info.value).replace(str(environ), "")
    assert [v for v in values if len(v) >= 4 and v in message] == []
    shadow = Path("/etc/shadow")
    if shadow.exists():
        with pytest.raises(DatasetError) as info:
            load_dataset("folder", shadow)
        assert "root:" not in str(info.value) and "$" not in str(info.value)


def test_a_folder_named_like_a_csv_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "x.csv").mkdir()
    with pytest.raises(DatasetError, match="needs a CSV"):
        load_dataset("folder", tmp_path)
    (tmp_path / "labels.csv").mkdir()
    with pytest.raises(DatasetError, match="needs a CSV"):
        load_dataset("folder", tmp_path)
    with pytest.raises(DatasetError, match="Is a directory"):
        read_csv(tmp_path / "x.csv")
    (tmp_path / "real.csv").write_text("image_path,label\n")
    with pytest.raises(DatasetError, match=r"real\.csv"):  # the folder x.csv is ignored
        load_dataset("folder", tmp_path)


def test_a_real_header_is_still_listed() -> None:
    frame = pd.DataFrame(columns=["Image Path", "Bi-Rads", "left or right breast", "Unnamed: 3"])
    assert found_columns(frame) == "found: Image Path, Bi-Rads, left or right breast, Unnamed: 3"
    with pytest.raises(DatasetError, match=r"missing column\(s\) label \(found: a, b\)"):
        require_columns(pd.DataFrame(columns=["a", "b"]), ("a", "label"), Path("t.csv"))
    for names in (["only_one"], ["a=b", "c"], [f"x{i}" for i in range(41)], ["a", "b" * 41]):
        assert found_columns(pd.DataFrame(columns=names)).startswith(f"found {len(names)} column")


@pytest.mark.parametrize(
    ("row", "column"),
    [
        (f"a.png,{SECRET}", "label"),
        (f"a.png,normal,{SECRET}", "age"),
        (f"a.png,normal,,{SECRET}", "view"),
        (f"a.png,benign,,,{SECRET},1,2,3", "x1"),
        (f"a.png,benign,,,1,1,2,2,{SECRET}", "lesion_kind"),
    ],
)
def test_folder_cells_are_never_quoted(tmp_path: Path, row: str, column: str) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text(
        f"image_path,label,age,view,x1,y1,x2,y2,lesion_kind\n{row}\n"
    )
    with pytest.raises(DatasetError, match=f"row 1, column '{column}'") as info:
        load_dataset("folder", tmp_path)
    _never_quotes(info.value)


@pytest.mark.parametrize(
    ("cells", "column"),
    [
        ({"label": SECRET}, "label"),
        ({"laterality": SECRET}, "laterality"),
        ({"view": SECRET}, "view"),
        ({"age": SECRET}, "age"),
        ({"lesions": json.dumps([{"box": [SECRET, 1, 2, 3]}])}, "lesions"),
        ({"lesions": json.dumps([{"box": [1, 1, 2, 2], "label": SECRET}])}, "lesions"),
        ({"lesions": json.dumps([{"box": [1, 1, 2, 2], "source": SECRET}])}, "lesions"),
        ({"lesions": json.dumps([{"box": SECRET}])}, "lesions"),
        ({"lesions": json.dumps([{"bx": SECRET}])}, "lesions"),
    ],
)
def test_manifest_cells_are_never_quoted(tmp_path: Path, cells: dict, column: str) -> None:
    row = {"image_path": "a.png", "patient_id": "p", "label": "benign", **cells}
    pd.DataFrame([row]).to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(DatasetError, match=f"row 1, column '{column}'") as info:
        Manifest.load_csv(tmp_path / "manifest.csv")
    _never_quotes(info.value)


def test_lesion_errors_never_quote_values() -> None:
    for kwargs in (
        {"box": (SECRET, 1, 2, 3), "label": "benign"},
        {"box": (5, 5, 1, 1), "label": "benign"},
        {"box": (1, 1, 2, 2), "label": SECRET},
        {"box": (1, 1, 2, 2), "label": "normal"},
        {"box": (1, 1, 2, 2), "label": "benign", "source": SECRET},
    ):
        with pytest.raises(ValueError, match="lesion") as info:
            Lesion(**kwargs)  # type: ignore[arg-type]
        assert SECRET not in str(info.value) and "5.0" not in str(info.value)
