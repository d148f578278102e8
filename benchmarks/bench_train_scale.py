"""The shipped recipe (``python -m hdcnn cv``) on N and 4N SYNTHETIC full-field mammograms:
peak memory, time per image and per stage, one process against ``torchrun`` (gloo).

    python benchmarks/bench_train_scale.py --out /tmp/bench_scale            # N = 8 and 32
    python benchmarks/bench_train_scale.py --out /tmp/bench_scale --sizes 8 32 --procs 1 2 \\
        --height 4000 --epochs 1 --folds 2

The cohort: one 16-bit MONOCHROME2 DICOM view per SYNTHETIC patient (``height`` x
``round(height * 13 / 16)`` pixels; 4000 x 3250 by default, a CBIS-DDSM view's size; drawn
at a quarter of that and enlarged, so its texture is smoother than a real film's), 25 %
malignant, 25 % benign, 50 % normal (:func:`hdcnn.data.synth.cohort_labels`), written in the
CBIS-DDSM folder layout (``CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/<date>-DDSM-NA-<n>/
1.000000-full mammogram images-<n>/1-1.dcm``) with a manifest CSV holding the labels and the
lesion boxes (CBIS-DDSM's own description CSVs list no normal view, which the recipe's
whole-image heads need). The N cohort is the first N images of the 4N one.

Each run is a fresh run folder, measured from the outside: wall time, and the peak resident
memory of the largest process (``RUSAGE_CHILDREN`` of a wrapper process; under ``torchrun``
the largest worker). Stage times come from the ``stage ...`` lines of ``<run>/cv.log`` (rank
0). Prints one table row per run and the peak-RSS ratio 4N / N per process count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


#: Labels dealt in turn, so every multiple of 4 images holds the same mix (the N cohort is the
#: first N images of the 4N one).
LABEL_CYCLE = ("normal", "benign", "normal", "malignant")
#: The views are drawn at 1 / RENDER_FACTOR of their height, then enlarged.
RENDER_FACTOR = 4


def build_cohort(root: Path, sizes: list[int], *, height: int, seed: int = 0) -> dict[int, Path]:
    """Write ``max(sizes)`` SYNTHETIC views (one per patient) and one manifest CSV per size
    (its first images); returns ``{size: manifest path}``."""
    import cv2
    import numpy as np

    from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
    from hdcnn.data.synth import (
        VIEWS,
        SynthConfig,
        lesion_spec,
        patient_id_for,
        render_view,
        synthetic_uid,
    )
    from hdcnn.dicom import build_dicom, write_dicom
    from hdcnn.terms import Label, LesionSource

    config = SynthConfig(height=height)
    # rendered at a quarter of the size and enlarged: the files have the full size and bit
    # depth (what the recipe's reading, preprocessing and cropping cost) without the minutes
    # that drawing 4,000-px texture takes
    small = SynthConfig(height=height // RENDER_FACTOR)
    scale = (config.width / small.width, height / small.height)  # x, y
    records = []
    for index in range(max(sizes)):
        label = Label(LABEL_CYCLE[index % len(LABEL_CYCLE)])
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        lat, view = VIEWS[int(rng.integers(len(VIEWS)))]
        specs = [lesion_spec(label, rng)] if label != Label.NORMAL else []
        pid = patient_id_for(index)
        kind = "Calc" if specs and specs[0].kind == "calcification" else "Mass"
        folder = f"{kind}-Training_P_{index + 1:05d}_{'LEFT' if lat == 'L' else 'RIGHT'}_{view}"
        rel = Path("CBIS-DDSM") / folder / f"07-20-2016-DDSM-NA-{index + 1}"
        rel = rel / f"1.000000-full mammogram images-{index + 1}" / "1-1.dcm"
        img = render_view(lat, view, density="B", lesions=specs, rng=rng, config=small)
        pixels = cv2.resize(img.pixels, (config.width, height), interpolation=cv2.INTER_LINEAR)
        ds = build_dicom(
            pixels,
            laterality=lat,
            view=view,
            patient_id=pid,
            study_uid=synthetic_uid(seed, index, "study"),
            pixel_spacing=config.pixel_spacing,
        )
        write_dicom(root / rel, ds)
        records.append(
            ImageRecord(
                image_path=rel.as_posix(),
                patient_id=pid,
                study_id=pid,
                laterality=lat,
                view=view,
                age=None,
                density="B",
                label=img.label,
                lesions=[
                    Lesion(
                        box=tuple(float(v) * f for v, f in zip(les.box, scale * 2, strict=True)),
                        label=les.label,
                        kind=les.kind,
                        source=LesionSource.MASK,
                    )
                    for les in img.lesions
                ],
                dataset="synth",
            )
        )
    (root / "README.txt").write_text("SYNTHETIC images (hdcnn benchmark), not real patients.\n")
    out = {}
    for n in sizes:
        out[n] = root / f"manifest_{n}.csv"
        Manifest(records[:n], root=root).save_csv(out[n])
    return out


def measure(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd`` in a fresh wrapper process; its wall time and largest peak RSS."""
    code = (
        "import json, resource, subprocess, sys, time; t = time.perf_counter(); "
        "rc = subprocess.call(sys.argv[1:]); "
        "print(json.dumps({'rc': rc, 'wall_s': time.perf_counter() - t, "
        "'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code, *cmd], env=env, capture_output=True, text=True, check=False
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return result


def stages(log: Path) -> dict[str, float]:
    """``stage <name>: <s> s`` lines of a cv log, summed by name with the fold number dropped."""
    out: dict[str, float] = {}
    for line in log.read_text().splitlines():
        m = re.search(r"stage (.+): ([0-9.]+) s$", line)
        if m:
            name = re.sub(r"^fold\d+ ", "per fold: ", m.group(1))
            out[name] = round(out.get(name, 0.0) + float(m.group(2)), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="work folder (cohort and runs)")
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 32], help="images per run")
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="processes per run")
    p.add_argument("--height", type=int, default=4000, help="view height in pixels (4000)")
    p.add_argument("--epochs", type=int, default=1, help="detector epochs per fold (1)")
    p.add_argument("--folds", type=int, default=2, help="folds (2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (with --procs N: N GPUs)")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    manifests = build_cohort(args.out / "cohort", sorted(args.sizes), height=args.height)
    print(f"cohort of {max(args.sizes)} images ready ({time.perf_counter() - t0:.0f} s)")
    rows = []
    for n, manifest in manifests.items():
        for procs in args.procs:
            run = args.out / f"run_n{n}_p{procs}"
            if run.exists():
                raise SystemExit(f"{run} exists: use another --out")
            launcher = (
                ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
                if procs > 1
                else []
            )
            cmd = [sys.executable, *launcher, "-m", "hdcnn", "cv", "--dataset", "manifest"]
            cmd += ["--root", str(manifest), "--out", str(run), "--folds", str(args.folds)]
            cmd += ["--det-epochs", str(args.epochs), "--threads", "1", "--device", args.device]
            got = measure(cmd)
            row = {
                "images": n,
                "processes": procs,
                "wall_s": round(got["wall_s"], 1),
                "s_per_image": round(got["wall_s"] / n, 2),
                "peak_rss_mb": round(got["peak_rss_mb"]),
                "stages_s": stages(run / "cv.log"),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| images | processes | wall (s) | s / image | peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['images']} | {r['processes']} | {r['wall_s']} | {r['s_per_image']} "
            f"| {r['peak_rss_mb']} |"
        )
    sizes = sorted(args.sizes)
    for procs in args.procs:
        peak = {r["images"]: r["peak_rss_mb"] for r in rows if r["processes"] == procs}
        if len(sizes) >= 2:
            ratio = peak[sizes[-1]] / peak[sizes[0]]
            print(f"peak-RSS ratio {sizes[-1]}/{sizes[0]} images, {procs} process(es): {ratio:.2f}")
    load = os.getloadavg()
    print(f"load average during the runs (1/5/15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    (args.out / "bench_train_scale.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
