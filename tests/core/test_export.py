"""Exported subnets reproduce their module: TorchScript and ONNX files, loaded back with
``load_exported``, give the module's logits (atol 1e-4), ONNX for any batch size; a file is
only written once it is verified, and bad requests fail with one clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasforge.export import ExportError, export_subnet, load_exported


def small_cnn(dims: int) -> nn.Module:
    """A static subnet-like CNN: conv-BN-activation blocks, squeeze-excite, pooled head."""
    conv, norm, pool = {
        1: (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d),
        2: (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d),
    }[dims]

    class SqueezeExcite(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.pool, self.fc = pool(1), conv(channels, channels, 1)

        def forward(self, x):
            return x * torch.sigmoid(self.fc(self.pool(x)))

    model = nn.Sequential(
        conv(3, 8, 3, stride=2, padding=1),
        norm(8),
        nn.Hardswish(),
        conv(8, 8, 5, padding=2, groups=8),
        norm(8),
        nn.ReLU(),
        SqueezeExcite(8),
        pool(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for module in model.modules():
            if isinstance(module, norm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


INPUTS = {1: (3, 20), 2: (3, 12, 12)}


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("dims", [1, 2])
def test_export_reproduces_the_module(tmp_path, fmt, dims):
    model = small_cnn(dims).train()  # the export must not depend on (or change) the mode
    example = torch.randn(2, *INPUTS[dims])
    path = export_subnet(model, example, tmp_path / "subnet", fmt)
    assert path == tmp_path / "subnet" / {"torchscript": "model.pt", "onnx": "model.onnx"}[fmt]
    assert model.training
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left
    run = load_exported(path)
    model.eval()
    for batch in (2, 5, 1):  # ONNX has a dynamic batch axis; TorchScript traces it too
        x = torch.randn(batch, *INPUTS[dims])
        with torch.no_grad():
            expected = model(x)
        got = run(x)
        assert got.dtype == torch.float32 and got.shape == (batch, 4)
        assert torch.allclose(got, expected, atol=1e-4)


def test_onnx_file_declares_a_dynamic_batch_axis(tmp_path):
    import onnx

    path = export_subnet(small_cnn(2), torch.randn(1, *INPUTS[2]), tmp_path, "onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    (graph_input,) = proto.graph.input
    batch_axis = graph_input.type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param == "batch" and not batch_axis.HasField("dim_value")


def test_bad_requests_fail_clearly(tmp_path):
    model, example = small_cnn(2), torch.randn(1, *INPUTS[2])
    with pytest.raises(ValueError, match=r"fmt: unknown export format 'tflite'.*torchscript, onnx"):
        export_subnet(model, example, tmp_path, "tflite")
    with pytest.raises(ValueError, match="unknown export file type"):
        load_exported(tmp_path / "model.tflite")
    with pytest.raises(FileNotFoundError, match="no such exported model"):
        load_exported(tmp_path / "model.onnx")

    class TwoHeads(nn.Module):
        def forward(self, x):
            return x.mean(), x.sum()

    with pytest.raises(ExportError, match="returns tuple"):
        export_subnet(TwoHeads(), example, tmp_path, "torchscript")


def test_an_export_that_does_not_reproduce_the_module_is_not_written(tmp_path):
    class RandomLogits(nn.Module):
        """Traced with its random draw frozen: the file cannot match a fresh forward."""

        def forward(self, x):
            return x.flatten(1) + torch.rand(x.shape[0], 1)

    with pytest.raises(ExportError, match="does not reproduce its outputs"):
        export_subnet(RandomLogits(), torch.randn(2, 3), tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()
