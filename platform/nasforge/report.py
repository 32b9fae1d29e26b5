"""Reports of a run, read from its study: trials table, Pareto front, plot.

``write_report(run_dir)`` writes into the run directory:

- ``trials.csv`` — one row per trial: number, state, objective values, every metric, the
  arch (JSON), device, wall time, error;
- ``pareto.csv`` / ``pareto.json`` — the feasible non-dominated COMPLETE trials, one per
  distinct arch, sorted by the first objective;
- ``pareto.png`` — every trial against the first two objectives (axes labelled with metric
  names and units), infeasible ones hollow, the front highlighted and joined;
- beside the front, the baselines of estimators that score reference methods
  (:mod:`nasforge.baselines`): listed in ``pareto.json`` and marked on the plot.

The rows of ``trials.csv`` are :class:`TrialRecord` values (:func:`trial_records`), which
is also what :func:`nasforge.run_experiment` hands a test to assert on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from .baselines import measure_baselines
from .engine.run_location import TRAINING_FOLDERS, durable, local_run_dir
from .engine.study import open_study
from .errors import StudyError
from .pareto import pareto_mask
from .plan import Plan


@dataclass(frozen=True)
class TrialRecord:
    """One trial as ``trials.csv`` shows it: plain values, no Optuna objects.

    ``metrics`` holds every metric the experiment's estimators and hardware models produce
    (``None`` where a trial has none, e.g. a failed one); ``feasible`` is ``None`` unless the
    trial is COMPLETE; ``duplicate_of`` is the number of the trial whose result a repeated
    arch reused.
    """

    number: int
    state: str
    metrics: dict[str, float | None]
    feasible: bool | None
    arch: dict[str, Any] | None
    duplicate_of: int | None = None
    device: str | None = None
    wall_s: float | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """The ``trials.csv`` row: the arch as compact JSON."""
        return {
            "number": self.number,
            "state": self.state,
            **self.metrics,
            "feasible": self.feasible,
            "arch": json.dumps(self.arch, separators=(",", ":")),
            "duplicate_of": self.duplicate_of,
            "device": self.device,
            "wall_s": self.wall_s,
            "error": self.error,
        }


@dataclass
class Report:
    """Where a report was written and what it found: ``records`` every trial,
    ``pareto`` the front (as in ``pareto.json``), ``front`` the front's records,
    ``baselines`` the reference methods beside it and ``warnings`` what could not be
    measured (a baseline that failed). ``run_dir`` and ``files`` are URIs (strings) for a
    cloud run directory."""

    run_dir: Path | str
    trials: int
    complete: int
    failed: int
    pareto: list[dict[str, Any]]
    files: list[Path | str]
    records: list[TrialRecord] = field(default_factory=list)
    front: list[TrialRecord] = field(default_factory=list)
    baselines: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_run(run_dir: Path) -> tuple[Plan, optuna.Study]:
    """The plan and study of a run directory (written by ``nasforge search``)."""
    config = run_dir / "experiment.json"
    if not config.exists():
        raise StudyError(f"{durable(run_dir)}: not a nasforge run directory (no experiment.json)")
    plan = Plan.from_json(json.loads(config.read_text()))
    study, _ = open_study(plan, run_dir, create=False)
    return plan, study


def report_experiment(plan: Plan, out_dir: str | Path) -> Report:
    """Rebuild an experiment's report from its study wherever it lives (``NASFORGE_STORAGE``
    or ``search.storage``: the database a cluster run wrote to) into ``out_dir``, with the
    experiment as ``experiment.json`` so ``nasforge report OUT_DIR`` works there later: how
    a laptop gets the results of a cluster run.

    A study in the run directory itself (the SQLite default, a relative journal) cannot be
    reached from elsewhere: that is a :class:`StudyError` naming the fix.
    """
    with local_run_dir(out_dir, skip=TRAINING_FOLDERS) as local:
        return _report_experiment(plan, local)


def _report_experiment(plan: Plan, out_dir: Path) -> Report:
    from .engine.storage import storage_file, storage_url
    from .engine.weights import save_json_atomic

    url = storage_url(plan.experiment.search.storage, out_dir)
    path = storage_file(url, out_dir)
    if path is not None and not path.exists():
        raise StudyError(
            f"experiment '{plan.experiment.name}': its study is a file in the run directory "
            f"({url}), not a shared database, and there is none here: report the run "
            "directory itself (nasforge report RUN_DIR), or set NASFORGE_STORAGE to the "
            "database the run used"
        )
    study, _ = open_study(plan, out_dir, create=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_json_atomic(plan.to_json(), out_dir / "experiment.json")
    return write_report(out_dir, plan=plan, study=study)


def _feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return all(c <= 0 for c in trial.constraints.values())


def front_trials(plan: Plan, trials: list[optuna.trial.FrozenTrial]) -> list[Any]:
    """The feasible non-dominated COMPLETE trials, one per distinct arch (duplicates
    left out), sorted by the first objective (best first)."""
    objectives = plan.objectives
    candidates = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and _feasible(t) and "duplicate_of" not in t.user_attrs
    ]
    values = np.array([t.values for t in candidates]).reshape(len(candidates), len(objectives))
    mask = pareto_mask(values, [o.direction for o in objectives])
    front = [t for t, on in zip(candidates, mask, strict=True) if on]
    front.sort(key=lambda t: t.values[0], reverse=objectives[0].direction == "maximize")
    return front


def trial_records(plan: Plan, trials: list[optuna.trial.FrozenTrial]) -> list[TrialRecord]:
    """The study's trials as plain records, in trial-number order."""
    records = []
    for t in trials:
        attrs = t.user_attrs
        records.append(
            TrialRecord(
                number=t.number,
                state=t.state.name,
                metrics={m: attrs.get(m) for m in plan.metrics},
                feasible=_feasible(t) if t.state == TrialState.COMPLETE else None,
                arch=attrs.get("arch"),
                duplicate_of=attrs.get("duplicate_of"),
                device=attrs.get("device"),
                wall_s=attrs.get("wall_s"),
                error=attrs.get("error"),
            )
        )
    return records


def write_report(
    run_dir: str | Path, *, plan: Plan | None = None, study: optuna.Study | None = None
) -> Report:
    """Write ``trials.csv``, ``pareto.csv``, ``pareto.json`` and ``pareto.png`` (from
    ``study`` when the caller has it open, else from the run's own) into ``run_dir``, a path
    or a cloud URI (:mod:`nasforge.engine.run_location`)."""
    with local_run_dir(run_dir, skip=TRAINING_FOLDERS) as local:
        return _write_report(local, plan, study)


def _write_report(run_dir: Path, plan: Plan | None, study: optuna.Study | None) -> Report:
    import pandas as pd

    if plan is None:
        plan, study = load_run(run_dir)
    elif study is None:
        study, _ = open_study(plan, run_dir, create=False)
    trials = study.get_trials(deepcopy=False)
    objectives = plan.objectives
    metrics = list(plan.metrics)

    records = trial_records(plan, trials)
    table = pd.DataFrame([r.row() for r in records],
                         columns=["number", "state", *metrics, "feasible", "arch",
                                  "duplicate_of", "device", "wall_s", "error"])  # fmt: skip
    table = table.astype({"duplicate_of": "Int64"})  # ints with blanks, not 5.0 / NaN
    table.to_csv(run_dir / "trials.csv", index=False)

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    front = front_trials(plan, trials)
    pareto = [
        {
            "number": t.number,
            **{m: t.user_attrs.get(m) for m in metrics},
            "arch": t.user_attrs.get("arch"),
        }
        for t in front
    ]
    pd.DataFrame(
        [{**p, "arch": json.dumps(p["arch"], separators=(",", ":"))} for p in pareto],
        columns=["number", *metrics, "arch"],
    ).to_csv(run_dir / "pareto.csv", index=False)
    baselines = measure_baselines(plan, run_dir)
    (run_dir / "pareto.json").write_text(
        json.dumps(
            {
                "objectives": [{"metric": o.metric, "direction": o.direction} for o in objectives],
                "constraints": [str(c) for c in plan.constraints],
                "trials": pareto,
                **({"baselines": baselines.rows} if baselines.rows else {}),
            },
            indent=2,
        )
    )
    files = [run_dir / n for n in ("trials.csv", "pareto.csv", "pareto.json")]
    if complete:
        files.append(_plot(run_dir / "pareto.png", plan, complete, front, baselines.rows))
    failed = sum(t.state == TrialState.FAIL for t in trials)
    by_number = {r.number: r for r in records}
    return Report(
        durable(run_dir),
        len(trials),
        len(complete),
        failed,
        pareto,
        [durable(f) for f in files],
        records,
        [by_number[t.number] for t in front],
        baselines.rows,
        baselines.errors,
    )


def _plot(path: Path, plan: Plan, complete, front, baselines) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = plan.objectives
    y_obj = objectives[0]
    y_metric = plan.metrics[y_obj.metric]
    if len(objectives) > 1:
        x_obj = objectives[1]
        x_metric = plan.metrics[x_obj.metric]
        x_label = f"{x_metric.label} ({x_obj.direction})"

        def x_of(t):
            return t.user_attrs[x_obj.metric]

    else:  # one objective: its value per trial, the best highlighted
        x_label = "trial"

        def x_of(t):
            return t.number

    def xy(trials):
        return [x_of(t) for t in trials], [t.user_attrs[y_obj.metric] for t in trials]

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    feasible = [t for t in complete if _feasible(t)]
    infeasible = [t for t in complete if not _feasible(t)]
    ax.scatter(*xy(feasible), s=14, color="#9db4c8", label=f"trials ({len(complete)})")
    if infeasible:
        ax.scatter(*xy(infeasible), s=14, facecolors="none", edgecolors="#c0c0c0",
                   label=f"infeasible ({len(infeasible)})")  # fmt: skip
    if front and len(objectives) > 1:
        fx, fy = xy(sorted(front, key=x_of))
        ax.plot(fx, fy, "-o", color="#d1495b", ms=5, lw=1.5, label=f"Pareto front ({len(front)})")
    elif front:
        ax.scatter(*xy(front), s=40, color="#d1495b", label=f"best ({len(front)})")
    shown = []  # each baseline that has both plotted metrics
    if len(objectives) > 1:
        for baseline in baselines:
            values = baseline["metrics"]
            if x_obj.metric in values and y_obj.metric in values:
                shown.append((baseline["name"], values[x_obj.metric], values[y_obj.metric]))
                ax.scatter([shown[-1][1]], [shown[-1][2]], marker="*", s=90, color="#2e4057",
                           zorder=3, label="baseline" if len(shown) == 1 else None)  # fmt: skip
        xs = [*xy(complete)[0], *(x for _, x, _ in shown)]
        if min(xs) > 0 and max(xs) / min(xs) >= 30:  # costs over decades: a log axis
            ax.set_xscale("log")
    left, right = ax.get_xlim()
    for name, x, y in shown:  # labels point inwards so none runs off the figure
        inwards = (x - left) / (right - left) > 0.6 if ax.get_xscale() == "linear" else (
            np.log(x / left) / np.log(right / left) > 0.6)  # fmt: skip
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(-6 if inwards else 6, 5),
                    ha="right" if inwards else "left", fontsize=8, color="#2e4057")  # fmt: skip
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"{y_metric.label} ({y_obj.direction})")
    ax.set_title(f"{plan.experiment.name}: {len(complete)} trials")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
