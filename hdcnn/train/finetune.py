"""Fine-tuning the ImageNet Lite0 trunk on lesion crops: the "fine-tuned" ablation of ``cv``.

The shipped classifiers are logistic regressions on FROZEN Lite0 features
(:mod:`hdcnn.nets.features`). This module trains the alternative the thesis design suggests:
the whole trunk, from its ImageNet start, with two logistic outputs on the pooled features,

- ``lesion``: every crop, lesion (benign, malignant or unknown grade) vs normal tissue (C1);
- ``malignant``: graded lesion crops only, malignant vs benign (C2);

on exactly the crops the frozen heads are fitted on (jittered and mirrored lesion boxes,
random normal tissue, the fold detector's hits and false positives). BatchNorm statistics stay
at their ImageNet values (batches of mixed crops are too small and too unbalanced to
re-estimate them), lesions are weighted up to balance the normal crops, and crops are flipped
at random. Deterministic for a seed on the CPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hdcnn.nets.efficientnet import LiteTrunk, keep_batchnorm_statistics, pooled_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneConfig:
    """Recipe of the fine-tuned crop classifier.

    Attributes:
        epochs: passes over the training crops.
        batch: crops per step.
        lr_trunk / lr_head: AdamW learning rates of the pretrained trunk and the new outputs.
        weight_decay: AdamW weight decay.
        stages: trunk stages whose pooled maps feed the outputs (as the frozen heads).
        seed: shuffling, flips and output initialisation.
        device: torch device of the training (the network is returned there).
    """

    epochs: int = 2
    batch: int = 32
    lr_trunk: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 1e-4
    stages: tuple[int, ...] = (1, 2, 3)
    seed: int = 0
    device: str = "cpu"


class CropNet(nn.Module):
    """Lite0 trunk + pooled stage features + two logits (lesion, malignant | lesion)."""

    def __init__(self, stages: tuple[int, ...]) -> None:
        super().__init__()
        self.trunk = LiteTrunk(pretrained=True)
        self.stages = tuple(stages)
        width = sum(2 * self.trunk.out_channels_list[i] for i in self.stages)
        self.out = nn.Linear(width, 2)

    def train(self, mode: bool = True) -> CropNet:
        super().train(mode)
        keep_batchnorm_statistics(self.trunk)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, s, s)`` crops in ``[0, 1]`` -> logits ``(B, 2)``: lesion, malignant."""
        return self.out(pooled_features(self.trunk(x), self.stages))


def finetune(
    crops: np.ndarray,
    labels: np.ndarray,
    cfg: FineTuneConfig,
    *,
    desc: str = "fine-tune",
    progress: bool = False,
) -> CropNet:
    """Fine-tune a :class:`CropNet` on ``crops`` float32 ``(N, s, s)`` with ``labels``
    (0 normal, 1 benign, 2 malignant, -1 lesion of unknown grade).

    Returns:
        The network in eval mode.

    Raises:
        ValueError: shapes disagree, or there is no lesion or no normal crop.
    """
    labels = np.asarray(labels)
    if len(crops) != len(labels) or crops.ndim != 3:
        raise ValueError(f"crops {crops.shape} and labels {labels.shape} do not match")
    lesion = labels != 0
    if lesion.all() or not lesion.any():
        raise ValueError("fine-tuning needs both lesion and normal crops")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device)
    net = CropNet(cfg.stages).to(device)
    head = list(net.out.parameters())
    trunk = [p for p in net.trunk.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": trunk, "lr": cfg.lr_trunk}, {"params": head, "lr": cfg.lr_head}],
        weight_decay=cfg.weight_decay,
    )
    graded = labels > 0
    w_lesion = float((~lesion).sum() / max(lesion.sum(), 1))
    w_mal = float((labels == 1).sum() / max((labels == 2).sum(), 1))
    y_lesion = torch.from_numpy(lesion.astype(np.float32)).to(device)
    y_mal = torch.from_numpy((labels == 2).astype(np.float32)).to(device)
    m_mal = torch.from_numpy(graded.astype(np.float32)).to(device)
    bce = nn.BCEWithLogitsLoss(reduction="none")
    steps = int(np.ceil(len(crops) / cfg.batch))
    net.train()
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(crops))
        total = 0.0
        for s in tqdm(range(steps), desc=f"{desc} {epoch + 1}/{cfg.epochs}", disable=not progress):
            idx = order[s * cfg.batch : (s + 1) * cfg.batch]
            batch = crops[idx].copy()
            flips = rng.integers(0, 4, size=len(idx))  # none, left-right, up-down, both
            batch[flips % 2 == 1] = batch[flips % 2 == 1][:, :, ::-1]
            batch[flips >= 2] = batch[flips >= 2][:, ::-1, :]
            x = torch.from_numpy(np.ascontiguousarray(batch))[:, None].to(device)
            logits = net(x)
            rows = torch.from_numpy(idx).to(device)
            yl, ym, mm = y_lesion[rows], y_mal[rows], m_mal[rows]
            loss_l = bce(logits[:, 0], yl) * (1 + (w_lesion - 1) * yl)
            loss_m = bce(logits[:, 1], ym) * mm * (1 + (w_mal - 1) * ym)
            loss = loss_l.mean() + loss_m.sum() / mm.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log.info(
            "%s epoch %d/%d: loss %.4f (%.0f s)",
            desc,
            epoch + 1,
            cfg.epochs,
            total / len(crops),
            time.perf_counter() - t0,
        )
    return net.eval()


@torch.inference_mode()
def probabilities(net: CropNet, crops: np.ndarray, batch: int = 64) -> tuple[np.ndarray, ...]:
    """``(P(lesion), P(malignant | lesion))`` float32 ``(N,)`` of crops ``(N, s, s)``, on the
    device the network is on."""
    device = next(net.parameters()).device
    out = [
        torch.sigmoid(
            net(torch.from_numpy(np.ascontiguousarray(crops[i : i + batch]))[:, None].to(device))
        ).cpu()
        for i in range(0, len(crops), batch)
    ]
    if not out:
        empty = np.zeros(0, np.float32)
        return empty, empty
    p = torch.cat(out).numpy().astype(np.float32)
    return p[:, 0], p[:, 1]
