"""The elastic ops of ``nasforge.nn``: extraction parity, in-place slicing, kernel
transformation, batch-norm slicing and re-calibration, importance sorting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasforge.nn import (
    ElasticBatchNorm1d,
    ElasticBatchNorm2d,
    ElasticConv1d,
    ElasticConv2d,
    ElasticDepthwiseConv1d,
    ElasticDepthwiseConv2d,
    ElasticLinear,
    ElasticModule,
    ElasticSqueezeExcite,
    bn_recalibrate,
    centre_crop,
    eval_weight_cache,
    make_divisible,
    sort_channels,
)

CONV = {1: ElasticConv1d, 2: ElasticConv2d}
DEPTHWISE = {1: ElasticDepthwiseConv1d, 2: ElasticDepthwiseConv2d}
NORM = {1: ElasticBatchNorm1d, 2: ElasticBatchNorm2d}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors run fastest on one thread; two OpenMP threads on a loaded 2-core
    machine spin on each other (20x slower here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _input(dims: int, channels: int, size: int = 9, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, channels, *([size] * dims))


def _perturb_transforms(conv) -> None:
    with torch.no_grad():
        for matrix in conv.kernel_transforms.values():
            matrix.add_(0.1 * torch.randn_like(matrix))


def _randomise_bn(bn) -> None:
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("mode", ["transform", "crop"])
@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_conv_extract_matches_forward(dims, mode, kernel):
    torch.manual_seed(0)
    conv = CONV[dims](8, 12, [3, 5, 7], stride=2, bias=True, kernel_mode=mode)
    if mode == "transform":
        _perturb_transforms(conv)
    conv.active_out_channels, conv.active_kernel_size = 10, kernel
    x = _input(dims, 6)
    y = conv(x)
    static = conv.extract(6)
    assert type(static) is (nn.Conv1d if dims == 1 else nn.Conv2d)
    assert (static.in_channels, static.out_channels, static.kernel_size[0]) == (6, 10, kernel)
    assert y.shape == (3, 10, *([5] * dims))
    torch.testing.assert_close(static(x), y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("mode", ["transform", "crop"])
def test_depthwise_extract_matches_forward(dims, mode):
    torch.manual_seed(0)
    conv = DEPTHWISE[dims](16, [3, 5, 7], stride=1, kernel_mode=mode)
    if mode == "transform":
        _perturb_transforms(conv)
    for kernel in (3, 5, 7):
        conv.active_kernel_size = kernel
        x = _input(dims, 11)
        static = conv.extract(11)
        assert static.groups == 11 and static.weight.shape[0] == 11
        torch.testing.assert_close(static(x), conv(x), atol=1e-6, rtol=0)
        assert conv(x).shape == x.shape  # "same" padding


@pytest.mark.parametrize("dims", [1, 2])
def test_batch_norm_linear_and_se_extract_match(dims):
    torch.manual_seed(0)
    bn = NORM[dims](16)
    _randomise_bn(bn)
    x = _input(dims, 10)
    for training in (False, True):
        bn.train(training)
        static = bn.extract(10)
        assert type(static) is (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)
        torch.testing.assert_close(static(x), bn(x), atol=1e-6, rtol=0)

    linear = ElasticLinear(12, 9)
    linear.active_out_features = 5
    v = torch.randn(4, 7)
    torch.testing.assert_close(linear.extract(7)(v), linear(v), atol=1e-6, rtol=0)

    se = ElasticSqueezeExcite(32, reduction=4)
    x = _input(dims, 20)
    static = se.extract(20)
    assert static.reduce.out_features == make_divisible(20 // 4)
    torch.testing.assert_close(static(x), se(x), atol=1e-6, rtol=0)
    assert not any(isinstance(m, ElasticModule) for m in static.modules())


def _capture_conv_weight(conv) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    real = conv._conv

    def spy(x, weight, *args):
        seen.append(weight)
        return real(x, weight, *args)

    conv._conv = spy
    return seen


@pytest.mark.parametrize("mode", ["transform", "crop"])
def test_forward_slices_weights_in_place(mode):
    conv = ElasticConv2d(8, 16, [3, 5], kernel_mode=mode).train()
    seen = _capture_conv_weight(conv)
    conv.active_out_channels = 12
    conv(_input(2, 5)).sum().backward()
    (weight,) = seen
    # a prefix slice of the stored weight: same storage, same first element, no copy
    assert weight.untyped_storage().data_ptr() == conv.weight.untyped_storage().data_ptr()
    assert weight.data_ptr() == conv.weight.data_ptr()
    assert weight.shape == (12, 5, 5, 5)

    conv.active_kernel_size = 3
    seen.clear()
    conv(_input(2, 5))
    if mode == "crop":  # the centre crop is a view too
        assert seen[0].untyped_storage().data_ptr() == conv.weight.untyped_storage().data_ptr()
    assert seen[0].shape == (12, 5, 3, 3)
    # gradients land in the active slice of the one stored weight only
    assert conv.weight.grad[12:].abs().sum() == 0 and conv.weight.grad[:12, :5].abs().sum() > 0


def test_batch_norm_updates_only_the_active_prefix_of_shared_stats():
    bn = ElasticBatchNorm2d(8).train()
    mean_ptr = bn.running_mean.data_ptr()
    bn(_input(2, 5) + 3.0)
    assert bn.running_mean.data_ptr() == mean_ptr
    assert torch.all(bn.running_mean[:5] > 0.1)
    assert torch.equal(bn.running_mean[5:], torch.zeros(3))
    assert torch.equal(bn.running_var[5:], torch.ones(3))
    assert int(bn.num_batches_tracked) == 1


def test_kernel_transform_starts_as_centre_crop_and_learns():
    torch.manual_seed(0)
    conv = ElasticDepthwiseConv2d(6, [3, 5, 7])
    assert set(conv.kernel_transforms) == {"7to5", "5to3"}
    for kernel in (5, 3):
        conv.active_kernel_size = kernel
        torch.testing.assert_close(conv.active_weight(6), centre_crop(conv.weight, kernel, 2))
    conv.active_kernel_size = 3
    conv(_input(2, 6)).square().sum().backward()
    assert all(
        m.grad is not None and m.grad.abs().sum() > 0 for m in conv.kernel_transforms.values()
    )
    conv.zero_grad(set_to_none=True)
    conv.active_kernel_size = 5
    conv(_input(2, 6)).square().sum().backward()
    assert conv.kernel_transforms["7to5"].grad is not None
    assert conv.kernel_transforms["5to3"].grad is None
    _perturb_transforms(conv)
    assert not torch.allclose(conv.active_weight(6), centre_crop(conv.weight, 5, 2))


def test_eval_weight_cache_follows_weight_and_arch_changes():
    torch.manual_seed(0)
    conv = ElasticConv2d(4, 8, [3, 5]).eval()
    x = _input(2, 4)
    with torch.no_grad():
        first = conv(x)
        assert conv._cache is not None
        torch.testing.assert_close(conv(x), first)
        conv.weight.mul_(2.0)  # an optimizer-like in-place update bumps the version
        torch.testing.assert_close(conv(x), 2.0 * first)
        conv.active_kernel_size = 3
        conv.kernel_transforms["5to3"].mul_(0.5)
        shrunk = conv(x)
        with eval_weight_cache(False):
            torch.testing.assert_close(conv(x), shrunk)
    conv.train()
    assert conv._cache is None


def test_bn_recalibrate_gives_exact_batch_statistics_and_restores_modes():
    torch.manual_seed(0)
    bn = ElasticBatchNorm2d(8, momentum=0.3)
    dropout = nn.Dropout(0.5)
    model = nn.Sequential(ElasticConv2d(3, 8, 3), dropout, bn, nn.ReLU()).eval()
    model[0].active_out_channels = 6
    batches = [torch.randn(4, 3, 5, 5) for _ in range(3)]
    with torch.no_grad():
        feats = [model[0](b) for b in batches]  # dropout must be off during calibration
    assert bn_recalibrate(model, [(b, None) for b in batches]) == 3
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean[:6], mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_var[:6], var, atol=1e-5, rtol=1e-5)
    assert bn.momentum == 0.3 and not model.training and not bn.training
    dropout.train()
    bn_recalibrate(model, iter(batches))
    assert dropout.training and not bn.training
    with pytest.raises(ValueError, match="no batches"):
        bn_recalibrate(model, [])
    torch.testing.assert_close(bn.running_mean[:6], mean, atol=1e-5, rtol=1e-5)


def test_sort_channels_keeps_the_function_and_orders_by_importance():
    torch.manual_seed(0)
    expand, bn1 = ElasticConv2d(4, 24, 1), ElasticBatchNorm2d(24)
    depthwise, bn2 = ElasticDepthwiseConv2d(24, [3, 5]), ElasticBatchNorm2d(24)
    se, project = ElasticSqueezeExcite(24), ElasticConv2d(24, 6, 1)
    _perturb_transforms(depthwise)
    for bn in (bn1, bn2):
        _randomise_bn(bn)
    net = nn.Sequential(expand, bn1, nn.ReLU(), depthwise, bn2, nn.Hardswish(), se, project).eval()
    depthwise.active_kernel_size = 3
    x = _input(2, 4)
    with torch.no_grad():
        before = net(x)
        index = sort_channels([expand], [bn1, depthwise, bn2, se], [project])
        se.sort_hidden()
        after = net(x)
    assert sorted(index.tolist()) == list(range(24))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    importance = project.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])
    hidden = se.expand.weight.abs().sum(dim=0)
    assert torch.all(hidden[:-1] >= hidden[1:])

    # plain torch.nn layers take part too; nested bands keep their members
    a, b = nn.Linear(3, 8), nn.Linear(8, 2)
    v = torch.randn(5, 3)
    reference = b(a(v))
    index = sort_channels([a], [], [b], nested=[4])
    assert set(index[:4].tolist()) == {0, 1, 2, 3}
    torch.testing.assert_close(b(a(v)), reference)


def test_make_divisible_and_clear_errors():
    assert [make_divisible(v) for v in (3, 15, 16, 35.9, 100)] == [8, 16, 16, 40, 104]
    assert make_divisible(10, 8) == 16  # never more than 10% below
    conv = ElasticConv2d(4, 8, [3, 5])
    with pytest.raises(ValueError, match="max_in_channels=4"):
        conv(_input(2, 5))
    conv.active_kernel_size = 4
    with pytest.raises(ValueError, match="kernel size 4"):
        conv(_input(2, 4))
    with pytest.raises(ValueError, match="odd"):
        ElasticConv2d(4, 8, [2, 3])
    with pytest.raises(ValueError, match="kernel_mode"):
        ElasticConv2d(4, 8, 3, kernel_mode="bilinear")
    with pytest.raises(ValueError, match="in_channels=9"):
        conv.extract(9)


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
def test_the_fast_1d_depthwise_convolution_equals_conv1d_in_value_and_gradient(stride, dilation):
    import torch.nn.functional as F

    from nasforge.nn.conv import depthwise_conv1d

    torch.manual_seed(0)
    x = torch.randn(4, 6, 17, requires_grad=True)
    w = torch.randn(6, 1, 5, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    padding = dilation * 2
    fast = depthwise_conv1d(x, w, b, stride, padding, dilation, 6)
    slow = F.conv1d(x, w, b, stride, padding, dilation, 6)
    assert fast.shape == slow.shape and fast.is_contiguous()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    grads_fast = torch.autograd.grad(fast.square().sum(), (x, w, b))
    grads_slow = torch.autograd.grad(slow.square().sum(), (x, w, b))
    for a, c in zip(grads_fast, grads_slow, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4)
