"""Issue 12: the malformed-input corpus through the reader, ``predict`` and the app's upload
path. Only :class:`hdcnn.errors.HDCNNError` may escape, every error names the file and the
problem, nothing reaches stderr, no planted identifier reaches a log, and a batch with bad
files still writes the good files' results with a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from hdcnn.errors import HDCNNError, MammogramError
from hdcnn.reader import read_mammogram
from tests.hostile.hostile_corpus import PLANTED, Case, all_cases, base_pixels, readable_age_junk

torch.set_num_threads(1)

CASES = all_cases()
#: Generous bounds per input: every corpus case is a few hundred KB at most.
MAX_SECONDS = 5.0
MAX_TRACED_BYTES = 64 << 20


def _no_identifiers(text: str) -> None:
    assert PLANTED not in text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reader_refuses_with_its_own_error_naming_file_and_problem(
    case: Case, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(HDCNNError) as info:
            read_mammogram(case.data, name=case.name)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = info.value
    assert type(err) is MammogramError
    assert err.source == case.name and str(err).startswith(f"{case.name}: ")
    assert re.search(case.expect, err.problem), err.problem
    assert "\n" not in str(err) and "Traceback" not in str(err)
    assert seconds < MAX_SECONDS
    assert peak < MAX_TRACED_BYTES, f"{case.name}: {peak / 1e6:.0f} MB traced"
    out, printed = capfd.readouterr()
    assert printed == "" and out == "", printed  # decoders kept quiet (libpng, libjpeg, pydicom)
    _no_identifiers(caplog.text + str(err))


def test_corpus_covers_every_family() -> None:
    assert {c.family for c in CASES} == {"lut", "bomb", "damage", "foreign", "noisy", "liar"}
    assert len({c.name for c in CASES}) == len(CASES)


def test_the_corpus_base_image_is_read(tmp_path: Path) -> None:
    """The corpus' cases fail for what was broken in them, not for their base image."""
    from hdcnn.dicom import build_dicom, write_dicom

    write_dicom(tmp_path / "ok.dcm", build_dicom(base_pixels(), laterality="L", view="CC"))
    m = read_mammogram(tmp_path / "ok.dcm")
    assert m.pixels.dtype == np.float32 and m.pixels.min() == 0.0 and m.pixels.max() == 1.0


def test_malformed_patient_age_is_not_echoed(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    m = read_mammogram(readable_age_junk(), name="age.dcm")
    assert m.meta.age is None
    assert "age.dcm" in caplog.text and "PatientAge" in caplog.text
    _no_identifiers(caplog.text + repr(m.meta) + "".join(capfd.readouterr()))
    assert len([r for r in caplog.records if "PatientAge" in r.getMessage()]) == 1


# ----------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.cascade_weights import make_weights_dir

    return make_weights_dir(tmp_path_factory.mktemp("weights"))


def _run_predict(argv: list[str]) -> int:
    from hdcnn.commands import predict

    parser = argparse.ArgumentParser()
    predict.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["predict", *argv])
    return args.func(args)


def _strict_json(text: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_predict_batch_with_the_whole_corpus_keeps_the_good_results(
    weights: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from hdcnn.dicom import build_dicom, write_dicom

    good = [tmp_path / "good_first.dcm", tmp_path / "good_last.dcm"]
    for i, path in enumerate(good):
        write_dicom(path, build_dicom(base_pixels(), laterality="LR"[i], view="CC"))
    bad = []
    for case in CASES:
        path = tmp_path / case.name
        path.write_bytes(case.data)
        bad.append(path)
    out = tmp_path / "out.json"
    code = _run_predict(
        [str(good[0]), *map(str, bad), str(good[1]), "--weights", str(weights), "--json", str(out)]
    )
    assert code == 1
    doc = _strict_json(out.read_text())
    results = {Path(r["input"]).name: r for r in doc["results"]}
    assert len(results) == len(CASES) + 2
    for path in good:
        assert results[path.name]["label"] in {"normal", "benign", "malignant"}
    for case in CASES:
        entry = results[case.name]
        assert set(entry) == {"input", "error"}
        assert re.search(case.expect, entry["error"]), entry["error"]
        assert not entry["error"].startswith("internal error")
    stdout, stderr = capfd.readouterr()
    assert "Traceback" not in stdout + stderr
    assert f"{len(CASES)} of {len(CASES) + 2} inputs could not be read" in stderr
    # the table is one line per input (no decoder message breaks it)
    table = [line for line in stdout.splitlines() if line.strip()]
    assert len(table) == 2 + len(CASES) + 2 + 1  # header, rule, rows, model line
    _no_identifiers(stdout + stderr + out.read_text())


def test_predict_no_paths_leaves_input_paths_out(weights: Path, tmp_path: Path, capfd) -> None:
    from hdcnn.dicom import build_dicom, write_dicom

    folder = tmp_path / "P_01234_LEFT_CC"  # CBIS-DDSM style: the path is a patient id
    folder.mkdir()
    path = folder / "1-1.dcm"
    write_dicom(path, build_dicom(base_pixels(), laterality="L", view="CC"))
    broken = folder / "P_01234_RIGHT_CC.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out.json"
    code = _run_predict(
        [str(path), str(broken), "--weights", str(weights), "--json", str(out), "--no-paths"]
    )
    assert code == 1
    text = out.read_text()
    stdout, stderr = capfd.readouterr()
    assert "P_01234" not in text + stdout + stderr
    doc = _strict_json(text)
    names = [r["input"] for r in doc["results"]]
    assert [n.split()[0] for n in names] == ["#1", "#2"]
    assert all(re.fullmatch(r"#\d+ [0-9a-f]{12}", n) for n in names)
    assert "label" in doc["results"][0] and "error" in doc["results"][1]


# ----------------------------------------------------------------------------- app


def test_app_upload_path_refuses_with_its_own_error(weights: Path) -> None:
    """:func:`hdcnn.analysis.analyse_bytes` is what the app runs on an upload."""
    from hdcnn.analysis import analyse_bytes
    from hdcnn.cascade import load_cascade

    cascade = load_cascade(weights)
    for case in CASES:
        with pytest.raises(HDCNNError) as info:
            analyse_bytes(case.data, case.name, cascade)
        assert type(info.value) is MammogramError
        assert str(info.value).startswith(f"{case.name}: ")


def test_stderr_capture_keeps_other_threads_output_and_only_takes_decoder_lines(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A server writes log lines from other threads while one image decodes: those lines
    pass through unchanged and never count as damage of the image being read."""
    import os

    from hdcnn import reader

    with reader._decoder_messages() as notes, reader.decoder_stderr():
        os.write(2, b"2026-01-01 12:00:00.000 another session: upload truncated\n")
        os.write(2, b"Corrupt JPEG data: premature end of data segment\n")
    assert notes == ["Corrupt JPEG data: premature end of data segment"]
    assert capfd.readouterr().err == "2026-01-01 12:00:00.000 another session: upload truncated\n"


def test_app_diagnose_page_shows_one_readable_error_per_hostile_upload(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real page (Streamlit AppTest): a message naming the file, no traceback."""
    from streamlit.testing.v1 import AppTest

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("HDCNN_WEIGHTS", str(weights))
    monkeypatch.setenv("HDCNN_SAMPLES_DIR", str(tmp_path / "samples"))
    monkeypatch.chdir(repo)
    at = AppTest.from_file(str(repo / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/diagnose.py").run()
    by_name = {c.name: c for c in CASES}
    for name in (
        "lut_short.dcm",
        "idat_ffffffff.png",
        "modality_CT.dcm",
        "noise32.pgm",
        "jpeg_sof_65535.dcm",  # issue 21: took the server to 14 GB
    ):
        case = by_name[name]
        at.file_uploader(key="diagnose_upload").upload(
            case.name, case.data, "application/octet-stream"
        ).run()
        assert not at.exception, [e.message for e in at.exception]
        assert len(at.error) == 1 and case.name in at.error[0].value, [e.value for e in at.error]
        assert not [h for h in at.subheader if "Verdict" in h.value]


def test_pydicoms_own_test_files_never_raise_raw_and_non_mammograms_are_refused() -> None:
    """pydicom's bundled test files (CT, MR, US, NM, SEG, RT ... and broken ones)."""
    import os

    import pydicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix not in {".py", ".json"}]
    if len(files) < 50:
        pytest.skip("pydicom's test files are not installed")
    read = []
    for path in files:
        try:
            read_mammogram(path)
        except HDCNNError as exc:
            assert type(exc) is MammogramError and exc.source == str(path)
        else:
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            read.append((os.path.basename(path), header.get("Modality")))
    # only files without a Modality (secondary captures made by codec tests) are read
    assert all(modality in (None, "", "MG") for _, modality in read), read


def test_concurrent_reads_keep_their_own_messages_and_restore_warnings() -> None:
    """Exam views are read in worker threads: each read judges only its own decoder
    messages, and the process's warning settings are restored afterwards."""
    import threading
    import warnings

    from hdcnn.dicom import build_dicom

    good = _dicom_bytes_of(build_dicom(base_pixels(), laterality="L", view="CC"))
    damaged = {c.name: c for c in CASES}["premature.jpg"]
    filters, show = list(warnings.filters), warnings.showwarning
    errors: list[str] = []

    def work(i: int) -> None:
        for _ in range(6):
            try:
                if i % 2:
                    read_mammogram(good, name=f"good{i}.dcm")
                else:
                    with pytest.raises(MammogramError, match="damaged"):
                        read_mammogram(damaged.data, name=damaged.name)
            except BaseException as exc:  # collected: asserted below
                errors.append(f"{i}: {exc!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert warnings.showwarning is show and list(warnings.filters) == filters


def _dicom_bytes_of(ds) -> bytes:  # type: ignore[no-untyped-def]
    import io

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
