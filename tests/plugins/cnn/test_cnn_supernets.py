"""The CNN plugin's spaces and supernets: the conformance suite at tiny sizes, restriction
for progressive shrinking, task fit, channel sorting, and the overhead benchmark runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nasforge.errors import ArchError
from nasforge.nn import bn_recalibrate
from nasforge.testing import check_space, check_supernet
from nasforge_cnn.mobilenetv3 import MobileNetV3Supernet
from nasforge_cnn.resnet import ResNetSupernet
from nasforge_cnn.spaces import MobileNetV3Space, ResNetSpace

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors run fastest on one thread; two OpenMP threads on a loaded 2-core
    machine spin on each other (20x slower here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TINY_MBV3 = dict(
    in_channels=2, num_classes=5, input_size=16, resolutions=[12, 16], stem_width=8,
    stem_stride=1, first_block_width=8, stage_widths=[8, 16], stage_strides=[2, 1],
    stage_activations=["relu", "hswish"], stage_se=[False, True], final_expand_width=32,
    feature_width=24, depths=[1, 2], kernels=[3, 5], expands=[2, 3], width_mults=[0.5, 1.0],
)  # fmt: skip
# 1-D, crop kernels, and a stride-1 first stage as wide as the first block: its first block
# has no residual, since width_mult scales the stage but not the first block
TINY_MBV3_1D = dict(dims=1, kernel_mode="crop", stage_strides=[1, 2])
TINY_RESNET = dict(
    in_channels=2, num_classes=5, input_size=16, stem_width=8, stem_pool=True,
    stage_widths=[16, 32], stage_strides=[1, 2], base_depths=[1, 1], depth_extras=[0, 1],
    expands=[0.25, 0.5], width_mults=[0.5, 1.0], resolutions=[12, 16],
)  # fmt: skip


def _env() -> dict[str, str]:
    """The environment of a subprocess that imports the plugins from this checkout."""
    path = [str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def _calibrated(supernet, space, seed=0):
    """Give the batch norms non-trivial statistics, as a trained supernet has."""
    torch.manual_seed(seed)
    supernet.set_active(space.largest())
    bn_recalibrate(supernet, [torch.randn(8, *space.input_shape()) for _ in range(2)])
    return supernet


def macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one sample through ``model``'s convolutions and linears."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output[0].numel() * module.weight[0].numel()

    kinds = (nn.Conv1d, nn.Conv2d, nn.Linear)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for hook in hooks:
        hook.remove()
    return total


@pytest.mark.parametrize(
    ("space", "cls"),
    [
        (MobileNetV3Space(**TINY_MBV3), MobileNetV3Supernet),
        (MobileNetV3Space(**{**TINY_MBV3, **TINY_MBV3_1D}), MobileNetV3Supernet),
        (ResNetSpace(**TINY_RESNET), ResNetSupernet),
        (ResNetSpace(**{**TINY_RESNET, "dims": 1}), ResNetSupernet),
    ],
    ids=["mbv3-2d", "mbv3-1d-crop", "resnet-2d", "resnet-1d"],
)
def test_supernet_conformance(space, cls):
    torch.manual_seed(0)
    supernet = _calibrated(cls(space), space)
    # kernel transforms away from the identity, so transform != crop is exercised
    with torch.no_grad():
        for name, p in supernet.named_parameters():
            if "kernel_transforms" in name:
                p.add_(0.05 * torch.randn_like(p))
    check_supernet(space, supernet, n=4, seed=1)
    with pytest.raises(ArchError, match="depth_1"):
        supernet.set_active({**space.largest(), "depth_1": 99})


def test_default_and_imagenet_spaces_pass_check_space():
    for space in (
        MobileNetV3Space(),
        MobileNetV3Space.imagenet(width_mults=[0.75, 1.0]),
        ResNetSpace(),
        ResNetSpace.imagenet(),
        MobileNetV3Space(dims=1, in_channels=1, input_size=40),
    ):
        check_space(space, n=10)
    space = MobileNetV3Space.imagenet()
    assert [k for k in space.largest() if k.endswith("_5")] == ["depth_5", "kernel_5", "expand_5"]
    assert space.input_shape({"resolution": 160}) == (3, 160, 160)


def test_largest_and_smallest_subnets_differ_in_cost():
    for space, cls in (
        (MobileNetV3Space(**TINY_MBV3), MobileNetV3Supernet),
        (ResNetSpace(**TINY_RESNET), ResNetSupernet),
    ):
        supernet = cls(space)
        large, small = (
            macs(supernet.extract(a), space.input_shape(a))
            for a in (space.largest(), space.smallest())
        )
        assert large > 2 * small > 0, (type(space).__name__, large, small)


def test_restrict_narrows_groups_for_progressive_shrinking():
    space = MobileNetV3Space(width_mults=[0.75, 1.0])
    assert space.groups() == {
        "depth": [2, 3, 4], "kernel": [3, 5, 7], "expand": [3, 4, 6], "width_mult": [0.75, 1.0]
    }  # fmt: skip
    phase1 = space.restrict(kernel=[7], depth=[4], expand=6)
    assert phase1.cardinality() == 2  # only width_mult is left free
    assert phase1.smallest()["kernel_2"] == [7, 7, 7, 7]
    phase2 = phase1.restrict(kernel=[7, 3])  # composes; order follows the full choices
    assert phase2.restriction == {"kernel": [3, 7], "depth": [4], "expand": [6]}
    assert phase2.groups() == space.groups()
    arch = phase2.sample(0)
    assert space.contains(arch) and all(k in (3, 7) for k in arch["kernel_1"])
    assert not phase1.contains(space.smallest())
    MobileNetV3Supernet(space).set_active(arch)  # the full space's supernet runs it

    with pytest.raises(ValueError, match="kernel=4"):
        space.restrict(kernel=[4])
    with pytest.raises(ValueError, match="unknown group 'kernels'"):
        space.restrict(kernels=[3])
    with pytest.raises(ValueError, match="'depth' needs at least one"):
        space.restrict(depth=[])

    resnet = ResNetSpace(base_depths=[2, 1, 1, 1])
    narrowed = resnet.restrict(depth=[2], width=[1.0])
    assert narrowed.largest()["depth_1"] == 4 and narrowed.smallest()["depth_2"] == 3
    assert len(narrowed.smallest()["expand_1"]) == 4
    with pytest.raises(ValueError, match="depth=3"):
        resnet.restrict(depth=[3])


def test_check_task_and_option_errors_name_the_field():
    space = MobileNetV3Space(in_channels=1, num_classes=10)
    space.check_task(SimpleNamespace(input_shape=(1, 32, 32), num_classes=10))
    for shape, classes, match in (
        ((1, 40), 10, "dims=2"),
        ((3, 32, 32), 10, "3 input channels"),
        ((1, 32, 32), 4, "4 classes"),
    ):
        with pytest.raises(ValueError, match=match):
            space.check_task(SimpleNamespace(input_shape=shape, num_classes=classes))
    MobileNetV3Space(dims=1, in_channels=1).check_task(
        SimpleNamespace(input_shape=(1, 40), num_classes=10)
    )

    for options, match in (
        ({"stage_widths": [8, 16]}, "one entry per stage"),
        ({"kernels": [2, 3]}, "kernels"),
        ({"expands": [3, 3]}, "expands lists 3 twice"),
        ({"depth": [2]}, "depth: Extra inputs"),
        ({"dims": 3}, "dims"),
    ):
        with pytest.raises(ValueError, match=match) as info:
            MobileNetV3Space(**options)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="base_depths"):
        ResNetSpace(base_depths=[1, 1])
    with pytest.raises(TypeError, match="realises ResNetSpace"):
        ResNetSupernet(MobileNetV3Space())


def test_spaces_import_without_torch():
    code = "import sys, nasforge_cnn.spaces; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


@pytest.mark.parametrize(
    "cls_space", [(MobileNetV3Supernet, TINY_MBV3), (ResNetSupernet, TINY_RESNET)]
)
def test_sort_channels_keeps_the_largest_subnet(cls_space):
    cls, options = cls_space
    space = MobileNetV3Space(**options) if cls is MobileNetV3Supernet else ResNetSpace(**options)
    supernet = _calibrated(cls(space), space).eval()
    x = torch.randn(3, *space.input_shape())
    with torch.no_grad():
        before = supernet(x)
        supernet.sort_channels()
        after = supernet(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    block = supernet.stages[0][0]
    consumer = block.project.conv if cls is MobileNetV3Supernet else block.conv3.conv
    importance = consumer.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


def test_extracted_subnet_is_a_sequential_of_readable_blocks():
    space = MobileNetV3Space(**TINY_MBV3)
    arch = space.smallest()
    subnet = MobileNetV3Supernet(space).extract(arch)
    names = [name for name, _ in subnet.named_children()]
    assert names == [
        "stem",
        "first_block",
        "stage1_block1",
        "stage2_block1",
        "final_expand",
        "head",
    ]
    assert repr(subnet.stage2_block1) == "MBConv(8->8, k3, e2 (mid 16), stride 1, hswish, SE)"
    assert subnet.stage1_block1.stride == 2 and subnet.stage1_block1.kernel_size == 3
    x = torch.randn(2, *space.input_shape(arch))
    torch.testing.assert_close(torch.jit.script(subnet.eval())(x), subnet(x))  # exportable
    resnet = ResNetSupernet(ResNetSpace(**TINY_RESNET)).extract(
        ResNetSpace(**TINY_RESNET).largest()
    )
    assert repr(resnet.stage2_block1) == "Bottleneck(16->32, e0.5 (mid 16), stride 2, projection)"


def test_bench_elastic_quick_runs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_elastic.py"), "--quick"],
        capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["ratio"] > 0 and len(summary["variants"]) == 3
