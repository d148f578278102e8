"""Peak memory and time of reading the worst inputs of each hostile family (issue 12).

Usage::

    python benchmarks/bench_hostile_memory.py [--pixels 79000000] [--predict] [--keep DIR]

Each input is read by ``hdcnn.read_mammogram`` in a fresh Python process; the figure is the
process's peak resident memory while reading (``VmHWM``, reset through
``/proc/self/clear_refs`` after the imports) minus its resident memory before, i.e. what that
one input cost. Families: the malformed-input corpus of ``tests/hostile`` (all cases,
the largest cost reported), the small memory bombs (PNG with an IDAT length of 0xFFFFFFFF,
Deflated DICOM claiming 60000 x 60000 / inflating 256 MB into a 256 x 192 image), and valid
images just under the pixel limit (``--pixels``, default 79 Mpx) as DICOM (native 16-bit;
with rescale and window), PNG (RGB; 16-bit), 16-bit TIFF and 8-bit JPEG. ``--predict``
also runs the shipped cascade on the large ones (preprocessing included). A benchmark, not a
test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
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
        outcome = "verdict " + str(cascade.predict(sys.argv[1]).label)
    else:
        m = read_mammogram(sys.argv[1])
        outcome = "read %dx%d" % m.pixels.shape
except HDCNNError as exc:
    outcome = "refused: " + exc.problem[:70]
except Exception as exc:  # only when reading with an older checkout (--repo)
    outcome = "RAW " + type(exc).__name__
seconds = time.perf_counter() - t
peak = peak_of()
print(json.dumps(dict(outcome=outcome, seconds=seconds, extra_mb=(peak - base) / 1024)))
"""


def _measure(
    path: Path, *, predict: bool = False, weights: str = "", repo: Path = REPO
) -> dict:
    code = CHILD.format(repo=str(repo), predict=predict, weights=weights)
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _large_inputs(folder: Path, pixels: int) -> dict[str, Path]:
    import cv2
    import numpy as np

    from hdcnn.dicom import build_dicom, write_dicom

    width = int(math.sqrt(pixels * 0.62))  # a mammogram's aspect ratio
    height = pixels // width
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((yy - height / 2) / (height / 2), xx / (0.8 * width))
    img16 = (np.clip(1.0 - r, 0.0, 1.0) * 60000).astype(np.uint16)
    del yy, xx, r
    files = {}
    dcm = folder / "large_native16.dcm"
    write_dicom(dcm, build_dicom(img16, laterality="L", view="CC"))
    files[f"valid DICOM {height}x{width} 16-bit native"] = dcm
    ds = build_dicom(img16, laterality="L", view="CC")
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -100
    ds.WindowCenter, ds.WindowWidth = 15000, 30000
    voi = folder / "large_rescale_window.dcm"
    write_dicom(voi, ds)
    files[f"valid DICOM {height}x{width} rescale + window"] = voi
    del ds
    rgb = folder / "large_rgb.png"
    gray8 = (img16 >> 8).astype(np.uint8)
    rgb.write_bytes(
        cv2.imencode(".png", np.dstack([gray8] * 3), [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
    )
    files[f"valid PNG {height}x{width} RGB 8-bit"] = rgb
    png = folder / "large16.png"
    png.write_bytes(cv2.imencode(".png", img16, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes())
    files[f"valid PNG {height}x{width} 16-bit"] = png
    tif = folder / "large16.tif"
    tif.write_bytes(cv2.imencode(".tif", img16)[1].tobytes())
    files[f"valid TIFF {height}x{width} 16-bit"] = tif
    jpg = folder / "large8.jpg"
    jpg.write_bytes(cv2.imencode(".jpg", (img16 >> 8).astype(np.uint8))[1].tobytes())
    files[f"valid JPEG {height}x{width} 8-bit"] = jpg
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=79_000_000)
    parser.add_argument("--predict", action="store_true")
    parser.add_argument("--weights", default=str(REPO / "models"))
    parser.add_argument("--keep", type=Path, help="write the inputs here (default: a temp dir)")
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="read with the hdcnn of another checkout"
    )
    args = parser.parse_args()

    from tests.hostile.hostile_corpus import all_cases, deflated_dicom, png_idat_length_bomb

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        bombs = {
            "PNG, IDAT length 0xFFFFFFFF": ("idat.png", png_idat_length_bomb()),
            "Deflated DICOM claiming 60000x60000": (
                "claims.dcm",
                deflated_dicom(60000, 60000, 256 << 20),
            ),
            "Deflated DICOM inflating 256 MB for 256x192": (
                "inflates.dcm",
                deflated_dicom(256, 192, 256 << 20),
            ),
        }
        rows = []
        for title, (name, data) in bombs.items():
            path = folder / name
            path.write_bytes(data)
            rows.append((title, path.stat().st_size, _measure(path, repo=args.repo)))
        worst = None
        for case in all_cases():
            path = folder / case.name
            path.write_bytes(case.data)
            result = _measure(path, repo=args.repo)
            if worst is None or result["extra_mb"] > worst[2]["extra_mb"]:
                worst = (f"corpus, worst: {case.name}", len(case.data), result)
        rows.append(worst)
        for title, path in _large_inputs(folder, args.pixels).items():
            rows.append((title, path.stat().st_size, _measure(path, repo=args.repo)))
            if args.predict:
                rows.append(
                    (f"  predict: {title}", path.stat().st_size,
                     _measure(path, predict=True, weights=args.weights, repo=args.repo))
                )  # fmt: skip
        print(f"{'input':58} {'file':>10} {'peak MB':>8} {'seconds':>8}  outcome")
        for title, size, r in rows:
            print(
                f"{title:58} {size / 1e6:9.2f}M {r['extra_mb']:8.0f} {r['seconds']:8.2f}  "
                f"{r['outcome']}"
            )


if __name__ == "__main__":
    main()
