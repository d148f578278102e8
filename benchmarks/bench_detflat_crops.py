"""det-flat scored on model-image crops (before issue 22's fix) against full-resolution crops.

Usage::

    python benchmarks/bench_detflat_crops.py [--weights models] [--mias DIR] [--limit N]

``crop_flat.pt`` of the shipped models was trained on crops cut from the original pixels
(``roi.crop_source = "original"``), but ``Experiment`` used to build the det-flat head with the
default ``"model"`` crops. This runs the det-flat concept both ways on the same mini-MIAS films
(the detector once per image) and prints both AUCs. The shipped models saw every one of these
patients, so the figures are in-sample: they show how much the crop source moves det-flat, not
how good it is. A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hdcnn.data.adapters import load_dataset  # noqa: E402
from hdcnn.evaluation import metrics  # noqa: E402
from hdcnn.evaluation.experiment import Experiment  # noqa: E402
from hdcnn.reader import read_mammogram  # noqa: E402
from hdcnn.terms import Label  # noqa: E402
from hdcnn.utils import DEFAULT_WEIGHTS_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR)
    parser.add_argument("--mias", type=Path, default=REPO.parent / "shared/data/mini-mias")
    parser.add_argument("--limit", type=int, default=0, help="first N images (0: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    exp = Experiment(args.weights, concepts=["det-flat", "det-hier"])
    flat = exp.detectors["det-flat"]
    model_crops = dataclasses.replace(flat.head, crop_source="model")
    manifest = load_dataset("mias", args.mias)
    records = list(manifest)[: args.limit or None]
    scores: dict[str, list[tuple[float, float]]] = {"original": [], "model": []}
    truth = []
    for record in records:
        mammo = read_mammogram(manifest.resolve(record))
        prep = exp.preprocess(mammo.pixels, source=record.image_path, laterality=None)
        trace = exp.traces(prep, mammo.pixels)["det-flat"]
        original_crops = flat.head
        for name, head in (("original", original_crops), ("model", model_crops)):
            flat.head = head
            boxes = trace.candidates.boxes[: flat.max_candidates]
            p_lesion, p_mal, crops = flat.classify(prep, boxes, mammo.pixels)
            new = dataclasses.replace(
                trace, p_lesion=p_lesion, p_malignant_given_lesion=p_mal, crops=crops
            )
            pred = flat.decide(new, keep_trace=False)
            scores[name].append((pred.p_abnormal, pred.p_malignant))
        flat.head = original_crops
        truth.append(Label(record.label))
    y_abn = np.array([t != Label.NORMAL for t in truth])
    y_mal = np.array([t == Label.MALIGNANT for t in truth])
    print(f"det-flat on {len(truth)} mini-MIAS films (in-sample), {args.weights}:")
    for name, values in scores.items():
        pa, pm = np.array(values).T
        aucs = [metrics.roc_auc(y, s) for y, s in ((y_abn, pa), (y_mal, pm))]
        text = ["n/a" if a is None else f"{a:.3f}" for a in aucs]
        print(f"  crops from the {name:8s} image: AUC abnormal {text[0]}, AUC malignant {text[1]}")


if __name__ == "__main__":
    main()
