"""Export of static subnets to files that run without nasforge, and loading them back.

Owns :func:`export_subnet` (an extracted ``nn.Module`` to TorchScript ``model.pt`` or ONNX
``model.onnx``) and :func:`load_exported` (either file back as a function from a float32
batch to logits, so an estimator scores an exported file exactly like a module).

Every export is verified before it is kept: the file is loaded back and must reproduce the
module's outputs on the example input (``atol``/``rtol``), ONNX files must also pass
``onnx.checker``; only then is it written, atomically (temporary file + rename), so a run
directory never holds a half-written or wrong export. ONNX uses the TorchScript-based
exporter (``torch.onnx.export(..., dynamo=False)``), which needs nothing beyond ``onnx``;
the dynamo exporter would need ``onnxscript``. The batch axis of ONNX files is dynamic.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from .errors import NasforgeError

ExportFormat = Literal["torchscript", "onnx"]
#: export format -> the file it writes in the output folder
EXPORT_FILES: dict[str, str] = {"torchscript": "model.pt", "onnx": "model.onnx"}
ONNX_OPSET = 18
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"

Runner = Callable[[torch.Tensor], torch.Tensor]


class ExportError(NasforgeError):
    """An export that cannot be made, or whose file does not reproduce the module."""


def export_subnet(
    model: nn.Module,
    example_input: torch.Tensor,
    out_dir: str | os.PathLike[str],
    fmt: ExportFormat = "torchscript",
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> Path:
    """Write ``model`` (a static subnet returning one logits tensor) to ``out_dir`` as
    ``model.pt`` (TorchScript, traced) or ``model.onnx`` (dynamic batch axis); return the
    file's path.

    The model is traced in eval mode, in float32 on the CPU, from a copy, so the caller's
    module (its device, dtype, train/eval mode) is left as it was. ``example_input`` is one float batch;
    the exported file must reproduce the model's outputs on it within ``atol``/``rtol``
    or :class:`ExportError` is raised and nothing is written.
    """
    if fmt not in EXPORT_FILES:
        raise ValueError(
            f"fmt: unknown export format {fmt!r} (expected one of {', '.join(EXPORT_FILES)})"
        )
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise ValueError("example_input: expected a batch tensor [N, ...]")
    module = copy.deepcopy(model).cpu().float().eval()
    x = example_input.detach().to(device="cpu", dtype=torch.float32)
    with torch.no_grad():
        expected = module(x)
    if not isinstance(expected, torch.Tensor):
        raise ExportError(
            f"{type(model).__name__} returns {type(expected).__name__}; "
            "export needs a model that returns one logits tensor"
        )
    data = _EXPORTERS[fmt](module, x)
    got = _RUNNERS[fmt](data)(x)
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=atol, rtol=rtol):
        error = (got - expected).abs().max().item() if got.shape == expected.shape else None
        detail = f"max abs error {error:.3g}" if error is not None else f"shape {tuple(got.shape)}"
        raise ExportError(
            f"{fmt} export of {type(model).__name__} does not reproduce its outputs "
            f"({detail}, expected shape {tuple(expected.shape)}, atol {atol})"
        )
    path = Path(out_dir) / EXPORT_FILES[fmt]
    _write_atomic(path, data)
    return path


def load_exported(path: str | os.PathLike[str]) -> Runner:
    """A function mapping a float32 batch to logits (a tensor on the batch's device) that
    runs the exported file ``path``: ``.pt`` with ``torch.jit.load``, ``.onnx`` with an
    ``onnxruntime.InferenceSession`` on the CPU."""
    path = Path(path)
    fmt = {Path(name).suffix: fmt for fmt, name in EXPORT_FILES.items()}.get(path.suffix)
    if fmt is None:
        suffixes = ", ".join(Path(name).suffix for name in EXPORT_FILES.values())
        raise ValueError(f"{path}: unknown export file type (expected {suffixes})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such exported model")
    return _RUNNERS[fmt](path.read_bytes())


# -- formats: each turns a module into bytes, and bytes back into a runner -------------
@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence torch's deprecation notices for ``jit.trace`` and the TorchScript-based ONNX
    exporter (both work in this torch; the alternatives need extra packages) and tracer
    warnings (the output check below catches what they warn about)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def _torchscript_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    try:
        with _quiet_exporters(), torch.no_grad():
            torch.jit.save(torch.jit.trace(module, (x,), check_trace=False), buffer)
    except Exception as exc:
        raise ExportError(f"torchscript: cannot trace {type(module).__name__}: {exc}") from exc
    return buffer.getvalue()


def _torchscript_runner(data: bytes) -> Runner:
    with _quiet_exporters():
        scripted = torch.jit.load(io.BytesIO(data), map_location="cpu")
    scripted.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = scripted(x.detach().to(device="cpu", dtype=torch.float32))
        return out.to(x.device)

    return run


def _import_onnx(name: str):
    """``onnx`` / ``onnxruntime``, which the ``onnx`` extra installs."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ExportError(f"ONNX export needs {name}: pip install 'nasforge[onnx]'") from None


def _onnx_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    onnx = _import_onnx("onnx")

    buffer = io.BytesIO()
    try:
        with _quiet_exporters():
            torch.onnx.export(
                module,
                (x,),
                buffer,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                do_constant_folding=True,
            )
    except Exception as exc:
        raise ExportError(f"onnx: cannot export {type(module).__name__}: {exc}") from exc
    data = buffer.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx: the exported model fails onnx.checker: {exc}") from exc
    return data


def _onnx_runner(data: bytes) -> Runner:
    onnxruntime = _import_onnx("onnxruntime")

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = session.run([output_name], {input_name: batch})
        return torch.from_numpy(logits).to(x.device)

    return run


_EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor], bytes]] = {
    "torchscript": _torchscript_bytes,
    "onnx": _onnx_bytes,
}
_RUNNERS: dict[str, Callable[[bytes], Runner]] = {
    "torchscript": _torchscript_runner,
    "onnx": _onnx_runner,
}


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
