"""Which device a trial runs on, and what it is called (recorded on every trial)."""

from __future__ import annotations


def trial_device() -> tuple[str, str]:
    """``(device, name)`` trials run on here: the GPU Ray assigned to this worker, else the
    CPU.

    torch is only consulted when a GPU is assigned or a plugin already imported it, so
    table-backed searches do not pay its import on every worker.
    """
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import ray

            gpus = ray.get_gpu_ids() if ray.is_initialized() else []
        except Exception:
            gpus = []
        if gpus:
            import torch
    if torch is not None and torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(torch.cuda.current_device())
    return "cpu", cpu_name()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the machine type."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
