"""The pretrained recipe's detector loop: its schedule, its batches and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hdcnn.errors import HDCNNError
from hdcnn.train.detector import WARMUP, one_cycle, steps_per_epoch


def _lrs(steps: int, scheduler) -> list[float]:  # type: ignore[no-untyped-def]
    opt = scheduler.optimizer
    out = []
    for _ in range(steps):
        opt.step()
        scheduler.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)


def test_ten_steps_no_longer_divide_by_zero() -> None:
    """A 10-patient SYNTHETIC cohort in 2 folds, 1 epoch, 2 images a step: 10 steps, where
    torch's OneCycleLR with a 10 % warm-up divided by zero (issue 21)."""
    steps = 1 * steps_per_epoch(20, 2, 1)
    assert steps == 10
    with pytest.raises(ZeroDivisionError):
        opt = _optimizer()
        _lrs(steps, torch.optim.lr_scheduler.OneCycleLR(opt, 3e-4, total_steps=10, pct_start=0.1))
    lrs = _lrs(steps, one_cycle(_optimizer(), 3e-4, steps))
    assert all(np.isfinite(lrs)) and max(lrs) <= 3e-4 + 1e-12


@pytest.mark.parametrize("steps", [1, 3, 9, 11, 97 * 6])
def test_every_other_length_keeps_the_recipes_schedule(steps: int) -> None:
    opt = _optimizer()
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-4, total_steps=steps, pct_start=WARMUP)
    assert _lrs(steps - 1, one_cycle(_optimizer(), 3e-4, steps)) == _lrs(steps - 1, ref)


def test_a_fold_without_training_images_is_refused(tmp_path: Path) -> None:
    from hdcnn.train.detector import fit_detector
    from hdcnn.train.distributed import DistContext
    from hdcnn.train.recipe import CVConfig

    cfg = CVConfig(out=str(tmp_path))
    with pytest.raises(HDCNNError, match="no training image"):
        fit_detector(
            None,  # type: ignore[arg-type]  (never read)
            [],
            cfg,
            DistContext(),
            torch.device("cpu"),
            desc="fold0 detector",
            progress=False,
        )


def test_ranks_walk_the_same_batches_and_draws() -> None:
    """Each of two ranks gets its slice of every global batch (the order padded round), with
    the augmentation draws one rank alone would have used for those images."""
    from hdcnn.data.torchdata import Augment
    from hdcnn.train.detector import batches
    from hdcnn.train.distributed import DistContext

    class Source:
        def image(self, i: int):  # type: ignore[no-untyped-def]
            class Image:
                class item:
                    gt = np.array([[1, 1, 3, 3]], np.float32)

                class prep:
                    image = np.full((8, 4), i / 10, np.float32)

            return Image()

    order = np.arange(5)
    single = list(batches(Source(), order, 2, np.random.default_rng(0), DistContext(), Augment()))
    assert [len(b[0]) for b in single] == [2, 2, 1]
    seen = []
    for rank in (0, 1):
        ctx = DistContext(rank=rank, world_size=2)
        got = list(batches(Source(), order, 2, np.random.default_rng(0), ctx, Augment()))
        assert [len(b[0]) for b in got] == [2, 2]  # 5 images padded to 8
        seen.append(got)
    # rank 0's first batch is one rank's first batch: same images, same draws
    for a, b in zip(seen[0][0][0], single[0][0], strict=True):
        assert torch.equal(a, b)


def test_weight_averaging_over_the_last_epochs(cohort: Path, tmp_path: Path) -> None:
    """``average_last=1`` is the plain recipe (the mean of one epoch's weights); averaging the
    last 2 epochs gives other, finite weights; more epochs than trained are refused."""
    from hdcnn.train.detector import fit_detector
    from hdcnn.train.distributed import DistContext
    from hdcnn.train.folds import CrossValidation
    from hdcnn.train.recipe import CVConfig

    cfg = CVConfig(
        dataset="manifest", root=str(cohort), out=str(tmp_path), folds=2, det_epochs=2, threads=1
    )
    cv = CrossValidation(cfg, progress=False)
    train = np.arange(6)

    def fit(average_last: int) -> dict[str, torch.Tensor]:
        model, summary = fit_detector(
            cv.source,
            train,
            cfg,
            DistContext(),
            torch.device("cpu"),
            average_last=average_last,
            desc="test",
            progress=False,
        )
        assert summary["averaged_epochs"] == average_last
        return model.state_dict()

    plain, one, two = fit(0), fit(1), fit(2)
    assert plain.keys() == one.keys() == two.keys()
    assert all(torch.equal(plain[k], one[k]) for k in plain)
    moved = [k for k in plain if plain[k].is_floating_point() and not torch.equal(plain[k], two[k])]
    assert moved and all(torch.isfinite(two[k]).all() for k in moved)
    with pytest.raises(ValueError, match="average_last"):
        fit(3)
