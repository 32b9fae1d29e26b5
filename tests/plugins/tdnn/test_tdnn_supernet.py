"""The EfficientTDNN space and supernet: the supernet contract, the published sizes, the
weight sharing of concatenated parts, the AAM-softmax loss and the trainer's phases."""

from __future__ import annotations

import math

import pytest
import torch

from nasforge.testing import check_supernet
from nasforge_hw.counting import count_macs
from nasforge_tdnn.progressive import ProgressiveTrainer, aam_softmax_loss, default_phases
from nasforge_tdnn.space import TDNNSpace
from nasforge_tdnn.supernet import SegmentConv1d, TDNNSupernet

SMALL = {"num_speakers": 5, "max_channels": 32, "attention_channels": 8, "res2_scale": 4}


def test_the_supernet_keeps_the_contract_at_every_arch():
    torch.manual_seed(0)
    space = TDNNSpace(**SMALL)
    check_supernet(space, TDNNSupernet(space), n=8)
    crop = TDNNSpace(**SMALL, kernel_mode="crop")
    check_supernet(crop, TDNNSupernet(crop), n=3)


def test_the_published_sizes_and_the_cpu_defaults():
    published = TDNNSpace.voxceleb()
    assert published.groups() == {
        "depth": [2, 3, 4],
        "kernel": [1, 3, 5],
        "width": [128, 176, 256, 384, 512],  # EfficientTDNN's widths; concatenation 3x
    }
    assert published.input_shape() == (80, 100)  # one second of 10-ms frames
    assert TDNNSpace().groups()["width"] == [64, 88, 128, 192, 256]
    supernet = TDNNSupernet(published)
    assert supernet.aggregate.weight.shape == (1536, 4 * 512)
    with pytest.raises(ValueError, match=r"max_channels .* multiple of res2_scale"):
        TDNNSpace(max_channels=100)
    with pytest.raises(ValueError, match=r"depths must lie in 1\.\.4"):
        TDNNSpace(depths=[2, 5])


def test_the_cpu_space_spans_more_than_four_times_the_macs():
    torch.manual_seed(0)
    space = TDNNSpace()
    supernet = TDNNSupernet(space).eval()
    x = torch.randn(1, *space.input_shape())
    largest = count_macs(supernet.extract(space.largest()), x)
    smallest = count_macs(supernet.extract(space.smallest()), x)
    assert largest > 8 * smallest  # about 176 M vs 10 M per second of audio


def test_each_concatenated_part_keeps_its_own_weights_at_every_width():
    torch.manual_seed(0)
    conv = SegmentConv1d(8, 3, 6)
    parts = [torch.randn(2, 4, 5) for _ in range(3)]
    conv.active_segments, conv.active_out_channels = 3, 6
    got = conv(torch.cat(parts, dim=1))
    expected = (
        sum(
            torch.nn.functional.conv1d(p, conv.weight[:, 8 * i : 8 * i + 4, None])
            for i, p in enumerate(parts)
        )
        + conv.bias[:, None]
    )
    torch.testing.assert_close(got, expected)
    conv.active_segments = 2
    with pytest.raises(ValueError, match="not 2 parts"):
        conv(torch.randn(2, 9, 5))


def test_aam_softmax_adds_the_margin_to_the_target_only():
    torch.manual_seed(0)
    embeddings, weight = torch.randn(6, 4), torch.randn(3, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    plain = aam_softmax_loss(embeddings, weight, labels, margin=0.0, scale=30.0)
    cosine = torch.nn.functional.normalize(embeddings) @ torch.nn.functional.normalize(weight).T
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(30 * cosine, labels))
    assert aam_softmax_loss(embeddings, weight, labels, margin=0.2, scale=30.0) > plain
    assert math.isfinite(float(aam_softmax_loss(embeddings, -weight, labels, 0.2, 30.0)))


def test_the_default_phases_make_kernel_depth_then_width_elastic():
    space = TDNNSpace()
    phases = default_phases(space, 12)
    assert [p.name for p in phases] == ["full", "kernel", "depth", "width_high", "width_all"]
    assert sum(p.epochs for p in phases) == 12 and phases[0].sample == {}
    assert phases[3].sample["width"] == [128, 192, 256]  # ratios 0.5 - 1
    assert phases[4].sample["width"] == [64, 88, 128, 192, 256]  # then down to 0.25
    assert [p.lr for p in default_phases(space, 12, lr=0.002)] == [None] * 4 + [0.0005]
    assert [p.lr for p in ProgressiveTrainer(epochs=12, lr=0.004).phases(space)][-1] == 0.001
    trainer = ProgressiveTrainer(phases=[{"name": "w", "epochs": 1, "sample": {"width": [100]}}])
    with pytest.raises(ValueError, match=r"phases.w.sample.width: \[100\]"):
        trainer.check_space(space)
