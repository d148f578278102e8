"""A weights folder with a calcification stream, for timing it: a copy of a shipped folder plus
the stream fitted on every image of a finished ``python -m hdcnn cv`` run folder.

Usage::

    python benchmarks/stream_weights.py --run runs/cv --out /tmp/stream-models [--weights models]

The stream's classifier is fitted on all the run's images at the run's out-of-fold stream
threshold (:func:`hdcnn.train.calc.calc_threshold`), from the run's cached spot features (made
on first use, about 4 min for mini-MIAS); the known answers are stamped anew and the copied
probability calibration is dropped (it was fitted without the stream). For benchmarks
(``benchmarks/bench_predict.py --weights``) and demonstrations only: the shipped models do not
have the stream (models/MODEL_CARD.md, "Pre-registered rows"). Research demo, not a medical
device.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hdcnn.cascade import stamp_known_answers  # noqa: E402
from hdcnn.cascade.calc import save_calc_stream  # noqa: E402
from hdcnn.train.calc import (  # noqa: E402
    CALC_SPOTS,
    c1_odds,
    calc_candidates,
    calc_threshold,
    fit_calc_classifier,
)
from hdcnn.train.folds import CrossValidation  # noqa: E402
from hdcnn.train.recipe import CVConfig  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a finished hdcnn cv run folder")
    p.add_argument("--root", default=CVConfig.root, help="the run's dataset folder")
    p.add_argument("--out", type=Path, required=True, help="the folder to write (replaced)")
    p.add_argument("--weights", type=Path, default=REPO / "models", help="folder to copy")
    args = p.parse_args()
    recipe = json.loads((args.run / "run_config.json").read_text(encoding="utf-8"))
    cfg = CVConfig(
        dataset=recipe["dataset"], root=args.root, out=str(args.run), seed=recipe["seed"]
    )
    cv = CrossValidation(cfg, progress=False)
    calc = calc_candidates(cv)
    threshold = calc_threshold(cv, calc)
    every = np.arange(len(cv.items))
    params = fit_calc_classifier(cv, calc, every, reference_odds=c1_odds(cv, "final", every))
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(args.weights, args.out)
    config = save_calc_stream(args.out, params, threshold, spots=CALC_SPOTS)
    # the copied calibration was fitted on scores without the stream: it no longer applies
    replace(config, calibration=None).save(args.out, hash_files=True)
    stamp_known_answers(args.out)
    print(
        f"wrote {args.out}: stream threshold {threshold:.4f}, known answers stamped, "
        "no probability calibration"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
