"""``nasforge export``: one trial of a run written to ``RUN_DIR/subnets/<trial>/`` (or a
folder of the caller's). The run is a run directory (a path or a cloud URI), or an
experiment whose study and supernet weights live on shared or cloud storage: the way a
laptop exports a trial of a cluster run.

``arch.json`` holds the trial's arch, its metrics and the space it belongs to. With a
format, the trial's static subnet is also written (:func:`nasforge.export.export_subnet`,
TorchScript or ONNX, or a format of the subnet's own: :class:`nasforge.SubnetFormats`)
and the written file is scored by every estimator that can score a
static model (``Estimator.evaluate_subnet``), so the export is checked to reproduce the
trial, not just to load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine.run_location import TRAINING_FOLDERS, durable, local_run_dir
from .errors import NasforgeError
from .experiment import is_uri
from .plan import Plan


@dataclass
class TrialExport:
    """What :func:`export_trial` wrote: the record, where, and what the file scored."""

    record: dict[str, Any]
    arch_file: Path | str
    model_file: Path | str | None = None
    reproduced: dict[str, float] = field(default_factory=dict)


def export_trial(
    run_dir: str | Path | None,
    number: int,
    fmt: str | None = None,
    *,
    plan: Plan | None = None,
    out: str | Path | None = None,
) -> TrialExport:
    """Export COMPLETE trial ``number`` (``fmt``: ``torchscript``, ``onnx``, or a format the
    space's subnets write themselves (:class:`~nasforge.SubnetFormats`, e.g. ``hf``) to also
    write its static subnet) into ``out`` (default ``RUN_DIR/subnets/<number>``).

    The run is ``run_dir`` (a path or a cloud URI; its ``experiment.json`` says what it
    is), or, given ``plan``, that experiment's run directory (``run_dir`` if given, else
    the experiment's own) with the study wherever the experiment keeps it."""
    if run_dir is None and plan is None:
        raise NasforgeError("export: give a run directory or an experiment")
    if out is not None and is_uri(out):
        raise NasforgeError(f"--out {out}: expected a local folder (the run directory itself "
                            "is where a trial goes without --out)")  # fmt: skip
    with local_run_dir(run_dir or plan.experiment.resolved_run_dir, skip=TRAINING_FOLDERS) as local:
        result = _export(local, number, fmt, plan, Path(out) if out else None)
        result.arch_file = durable(result.arch_file)
        if result.model_file is not None:
            result.model_file = durable(result.model_file)
        return result


def _export(
    run_dir: Path, number: int, fmt: str | None, plan: Plan | None, out: Path | None
) -> TrialExport:
    from .engine.study import open_study
    from .report import load_run

    if plan is None:
        plan, study = load_run(run_dir)
    else:
        study, _ = open_study(plan, run_dir, create=False)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    trial = trials.get(number)
    if trial is None or trial.state.name != "COMPLETE":
        raise NasforgeError(
            f"{durable(run_dir)}: trial {number} does not exist or did not complete"
        )
    out = out or run_dir / "subnets" / str(number)
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "trial": trial.number,
        "arch": trial.user_attrs["arch"],
        "metrics": {m: trial.user_attrs.get(m) for m in plan.metrics},
        "space": plan.experiment.space.model_dump(),
    }
    result = TrialExport(record, out / "arch.json")
    if fmt:
        result.model_file, result.reproduced, record["export"] = _export_model(
            plan, run_dir, record, out, fmt
        )
    result.arch_file.write_text(json.dumps(record, indent=2))
    return result


def _export_model(
    plan: Plan, run_dir: Path, record: dict[str, Any], out: Path, fmt: str
) -> tuple[Path, dict[str, float], dict[str, Any]]:
    """Write the trial's static subnet as ``fmt``, then score the written file with the
    estimators that can score a static model."""
    if plan.supernet_factory is None or plan.experiment.train is None:
        raise NasforgeError(
            f"{run_dir}: --format needs a supernet; space '{plan.experiment.space.name}' "
            "has none (the arch and metrics are exported without it)"
        )
    import torch

    from .engine.weights import trained_weights
    from .engine.worker import Evaluator
    from .export import EXPORT_FILES, export_subnet, load_exported
    from .sdk import SubnetFormats

    evaluator = Evaluator.build(plan.to_json(), str(run_dir), [trained_weights(run_dir)])
    arch = evaluator.plan.space.validate(record["arch"])
    subnet = evaluator.subnet(arch, record["trial"])
    shape = evaluator.plan.space.input_shape(arch)
    if fmt in EXPORT_FILES:
        example = torch.randn(1, *shape, device=evaluator.contexts[0].device)
        written = export_subnet(subnet, example, out, fmt)
        model = load_exported(written)
    else:
        own = subnet.export_formats if isinstance(subnet, SubnetFormats) else {}
        if fmt not in own:
            known = ", ".join([*EXPORT_FILES, *own])
            raise NasforgeError(
                f"--format {fmt}: the subnets of space '{plan.experiment.space.name}' are "
                f"written as {known}"
            )
        written = subnet.save_export(out, fmt)
        model = subnet.load_export(written, fmt)
    reproduced: dict[str, float] = {}
    for estimator, context in zip(evaluator.plan.estimators, evaluator.contexts, strict=False):
        try:
            reproduced.update(estimator.evaluate_subnet(model, arch, context))
        except NotImplementedError:
            continue
    summary = {
        "format": fmt,
        "file": written.name,
        "input_shape": list(shape),
        "metrics": reproduced,
    }
    return written, reproduced, summary
