"""``python -m hdcnn cv``: patient-grouped cross-validation of the pretrained cascade.

Trains the detector and the six classifiers once per fold, scores every image with models that
never saw its patient, reports the four concepts (AUC with patient-bootstrap intervals,
sensitivity at 90% specificity, FROC and candidate recall per lesion type), chooses the
thresholds on the out-of-fold scores and, with ``--ship DIR``, trains the final models on all
patients and writes them with ``cascade.json`` and ``experiments.json``. Resumable: re-running
the same command continues from the run folder. Runs as one process or under ``torchrun
--nproc_per_node=N -m hdcnn cv ...`` (rank 0 prints). See docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cv`` command to the CLI."""
    from hdcnn.train.ablations import ABLATION_ROWS
    from hdcnn.train.recipe import CVConfig

    d = CVConfig()
    p = subparsers.add_parser(
        "cv",
        help="cross-validate the pretrained cascade and the four concepts; ship final models",
        description="Patient-grouped k-fold cross-validation (research demo, not a medical "
        "device). Resumable: the same command continues a stopped run. Several processes: "
        "torchrun --nproc_per_node=N -m hdcnn cv ...",
    )
    p.add_argument("--dataset", default=d.dataset, help=f"adapter name (default {d.dataset})")
    p.add_argument("--root", type=Path, required=True, help="dataset folder")
    p.add_argument("--out", type=Path, default=Path(d.out), help=f"run folder ({d.out})")
    p.add_argument("--folds", type=int, default=d.folds, help=f"k (default {d.folds})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"fold and training seed ({d.seed})")
    p.add_argument(
        "--det-epochs",
        type=int,
        default=d.det_epochs,
        help=f"detector epochs per fold ({d.det_epochs})",
    )
    p.add_argument(
        "--long-side",
        type=_long_side,
        default=d.cascade.long_side,
        help=f"model image long side in pixels: the detector's input ({d.cascade.long_side}; "
        "anchors keep their size in millimetres)",
    )
    p.add_argument("--threads", type=int, default=d.threads, help=f"torch threads ({d.threads})")
    p.add_argument(
        "--device",
        type=_device,
        default=d.device,
        help="torch device of detector training, proposals and crop features: cpu (default), "
        "cuda, cuda:1 ...; a speed-up only, held-out images are scored on the CPU",
    )
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="take the model images from this preprocessed cache (python -m hdcnn dataset "
        "cache) instead of preprocessing the originals; crops still come from the originals",
    )
    p.add_argument(
        "--ship",
        type=Path,
        metavar="DIR",
        help="train the final models on all patients and write them to DIR",
    )
    p.add_argument(
        "--calc-stream",
        action="store_true",
        help="give every weights folder the calcification stream: full-resolution spot "
        "candidates with their own classifier and threshold (docs/TRAINING.md)",
    )
    p.add_argument(
        "--ablations",
        nargs="*",
        choices=[name for name in ABLATION_ROWS if name != "reference"],
        metavar="ROW",
        help="also measure the ablation rows (random init, 512-px crops, ...): every row, or "
        "only the named ones beside the reference (not with --ship)",
    )
    p.set_defaults(func=run)


def _long_side(text: str) -> int:
    """``--long-side``: a whole number of pixels the detector can work with."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pixels") from None
    if not 64 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"{value} px: use 64 to 4096")
    return value


def _device(text: str) -> str:
    """``--device``: a torch device that exists on this machine."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: use cpu or cuda[:N]")
    return text


def num(value: object, digits: int = 3) -> str:
    """A figure of the Markdown tables: ``digits`` decimals, ``—`` when there is none."""
    return "—" if value is None else f"{float(value):.{digits}f}"


def froc_text(froc: dict | None) -> str:
    """``0.48 / 0.59 / 0.67``: sensitivity at 0.5, 1 and 2 false positives per image."""
    return "—" if not froc else " / ".join(num(froc[k], 2) for k in ("0.5", "1", "2"))


def _auc_text(value: object, ci: list | None) -> str:
    """``0.729 [0.66–0.79]``: an AUC and its 95 % interval."""
    low, high = ci or (None, None)
    return f"{num(value)} [{num(low, 2)}–{num(high, 2)}]"


def markdown(report: dict) -> str:
    """The report's tables as Markdown (the README and the model card quote them)."""
    from hdcnn.config import MAX_CANDIDATES
    from hdcnn.evaluation.experiment import REPORT_SPECIFICITY as SPEC

    top = (report.get("config") or {}).get("cascade", {}).get("max_candidates", MAX_CANDIDATES)
    lines = [
        f"{report['n_images']} images, {report['n_patients']} patients, "
        f"{report['n_lesions']} lesion boxes; {report['protocol']['folds']}-fold, "
        "patient-grouped, out of fold",
        "",
        "| concept | AUC abnormal [95% CI] | AUC malignant [95% CI] "
        f"| sens. abnormal @ spec {SPEC:g} | sens. malignant @ spec {SPEC:g} "
        "| macro-F1 | specificity | FROC @0.5 / 1 / 2 FP | on merged findings |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in report["concepts"].items():
        auc = {
            t: _auc_text(m.get(f"auc_{t}"), m.get(f"auc_{t}_ci")) for t in ("abnormal", "malignant")
        }
        sas = m.get("sensitivity_at_specificity", {})
        lines.append(
            f"| {name} | {auc['abnormal']} | {auc['malignant']} | {num(sas.get('abnormal'))} "
            f"| {num(sas.get('malignant'))} | {num(m.get('macro_f1'))} "
            f"| {num(m.get('specificity'))} | {froc_text(m.get('froc'))} "
            f"| {froc_text(m.get('froc_findings'))} |"
        )
    lines += [
        "",
        f"| lesion type | lesions | candidate recall @ top {top} | det-hier FROC @0.5 / 1 / 2 FP "
        "| on merged findings | images | det-hier AUC, these images vs normal [95% CI] |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, t in report.get("lesion_types", {}).items():
        lines.append(
            f"| {kind} | {t['n_lesions']} | {num(t['candidate_recall'], 2)} "
            f"| {froc_text(t['froc'])} | {froc_text(t.get('froc_findings'))} "
            f"| {num(t.get('n_images'), 0)} "
            f"| {_auc_text(t.get('auc_vs_normal'), t.get('auc_vs_normal_ci'))} |"
        )
    ab = report.get("ablations")
    if ab:
        kinds = sorted({k for r in ab["rows"].values() for k in r.get("froc_1_by_kind") or {}})
        lines += [
            "",
            "| ablation | what changes | AUC abnormal (Δ to reference [95% CI]) "
            "| AUC malignant (Δ [95% CI]) | FROC @1 FP |"
            + "".join(f" FROC @1 FP, {kind} |" for kind in kinds),
            "| --- | --- | --- | --- | --- |" + " --- |" * len(kinds),
        ]
        for name, row in ab["rows"].items():
            diff = row.get("minus_reference", {})
            by_kind = row.get("froc_1_by_kind") or {}
            lines.append(
                f"| {name} | {row['what']} "
                f"| {num(row['auc_abnormal'])}{_difference(diff.get('auc_abnormal'))} "
                f"| {num(row['auc_malignant'])}{_difference(diff.get('auc_malignant'))} "
                f"| {num(row['froc_1'], 2)} |"
                + "".join(f" {num(by_kind.get(kind), 2)} |" for kind in kinds)
            )
    return "\n".join(lines)


def _difference(d: list[float] | None) -> str:
    """`` (+0.027 [-0.004, +0.058])``: an ablation row's AUC minus the reference's, paired CI."""
    from hdcnn.evaluation.plots import difference_text

    text = difference_text(d, ci_digits=3)
    return "" if text is None else f" ({text})"


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from hdcnn.train.recipe import CVConfig, configure_logging
    from hdcnn.train.recipe import run as run_cv

    cfg = CVConfig(
        dataset=args.dataset,
        root=str(args.root),
        out=str(args.out),
        folds=args.folds,
        seed=args.seed,
        det_epochs=args.det_epochs,
        cascade=replace(CVConfig().cascade, long_side=args.long_side),
        threads=args.threads,
        device=args.device,
        cache=None if args.cache is None else str(args.cache),
        calc_stream=args.calc_stream,
    )
    configure_logging(Path(cfg.out))
    # --ablations absent: None; without names: []; else the named rows
    rows = args.ablations
    report = run_cv(cfg, ship=args.ship, ablations=False if rows is None else rows or True)
    if report is None:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    print(markdown(report))
    print(f"wrote {Path(cfg.out) / 'cv_report.json'}")
    if args.ship:
        print(f"wrote the shipped models to {args.ship}")
    return 0
