"""The ``nasforge`` command line.

``run`` (train -> search -> report) and the phases alone: ``validate``, ``train``,
``search``, ``report``, ``export``; ``fidelity`` (the supernet's ranking against standalone
training), ``dashboard``, ``plugins``, ``env``; ``bench-search``
(strategies scored against a tabular space's whole table); on a Ray cluster,
``submit`` and ``jobs list|status|logs|stop``; and the commands plugins add
(``register_commands``, e.g. ``nasforge lut`` from ``nasforge_hw``). This module parses
and dispatches; the work lives with each feature. A user error prints one line,
``error: <file>: <yaml.path>: <what was expected>``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from .errors import NasforgeError


def _plan(path: str):
    from .plan import load_plan

    return load_plan(path)


def cmd_validate(args: argparse.Namespace) -> int:
    plan = _plan(args.experiment)
    exp = plan.experiment
    objectives = ", ".join(f"{o.direction} {o.metric}" for o in plan.objectives)
    print(f"{args.experiment}: ok")
    print(f"  space      {exp.space.name} ({plan.space.cardinality():,} archs)")
    if exp.task is not None:
        print(f"  task       {exp.task.name} (input {tuple(plan.task.input_shape)}, "
              f"{plan.task.num_classes} classes)")  # fmt: skip
    if exp.train is not None and exp.train.sweep is not None:
        sweep = exp.train.sweep
        print(
            f"  train      sweep of {len(exp.train.recipes())} recipes (from {exp.train.trainer}),"
            f" {sweep.workers_per_trial} Ray Train worker(s) each, ASHA after "
            f"{sweep.grace_period} epoch(s)"
        )
    elif exp.train is not None:
        workers = plan.trainer.options.get("num_workers", 1)
        print(f"  train      {exp.train.trainer} on {workers} Ray Train worker(s)")
    print(f"  objectives {objectives}")
    if plan.constraints:
        print(f"  constraints {', '.join(str(c) for c in plan.constraints)}")
    print(
        f"  search     {exp.search.strategy}, {exp.search.n_trials} trials, "
        f"{exp.search.concurrency} concurrent, "
        + (f"batches of {exp.search.batch_size}" if exp.search.batch_size else "adaptive batches")
    )
    print(f"  run dir    {exp.resolved_run_dir}")
    return 0


def _search(plan, run_dir: str | Path) -> None:
    from .engine import run_search

    _print_search(run_search(plan, run_dir))


def _print_search(summary) -> None:
    resumed = f" ({summary.resumed_complete} from before)" if summary.resumed_complete else ""
    retried = (
        f", {summary.orphans_retried} orphaned trials retried" if summary.orphans_retried else ""
    )
    print(
        f"search: {summary.complete} complete{resumed}, {summary.failed} failed{retried} "
        f"in {summary.wall_s:.1f}s; study '{summary.study_name}' in {summary.storage}"
    )


def _report(run_dir: str | Path, plan=None) -> None:
    from .report import write_report

    _print_report(write_report(run_dir, plan=plan))


def _print_report(report) -> None:
    print(
        f"report: {report.complete} complete / {report.trials} trials, "
        f"{len(report.pareto)} on the Pareto front"
    )
    for path in report.files:
        print(f"  {path}")
    for baseline in report.baselines:
        values = ", ".join(f"{k} {v:.4g}" for k, v in baseline["metrics"].items())
        print(f"  baseline {baseline['name']}: {values}")
    for warning in report.warnings:
        print(f"  warning: {warning}")


def _train(plan, run_dir: str | Path) -> None:
    from .engine.train import run_training

    _print_train(run_training(plan, run_dir))


def _print_train(summary) -> None:
    if summary.skipped:
        print(f"train: already trained ({summary.epochs} epochs): {summary.weights}")
        return
    resumed = (
        f", resumed after epoch {summary.resumed_from_epoch}" if summary.resumed_from_epoch else ""
    )
    print(
        f"train: {summary.epochs} epochs in {summary.wall_s:.1f}s{resumed}; "
        f"supernet weights in {summary.weights}"
    )


def cmd_train(args: argparse.Namespace) -> int:
    plan = _plan(args.experiment)
    if plan.experiment.train is None:
        raise NasforgeError(f"{args.experiment}: train: the experiment has no 'train' section")
    _train(plan, args.run_dir or plan.experiment.resolved_run_dir)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    plan = _plan(args.experiment)
    _search(plan, args.run_dir or plan.experiment.resolved_run_dir)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_experiment

    printers = {"train": _print_train, "search": _print_search, "report": _print_report}
    run_experiment(
        _plan(args.experiment),
        args.run_dir,
        on_phase=lambda phase, summary: printers[phase](summary),
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if Path(args.target).is_file():  # an experiment: its study wherever it lives, into --out
        from .report import report_experiment

        plan = _plan(args.target)
        _print_report(report_experiment(plan, args.out or plan.experiment.resolved_run_dir))
        return 0
    if args.out:
        raise NasforgeError(
            "--out: only with an experiment file (a run directory reports into itself)"
        )
    _report(args.target)  # a run directory: a path or a cloud URI
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    from .fidelity import describe_agreement, run_fidelity

    report = run_fidelity(
        args.run_dir,
        archs=args.archs,
        source=args.source,
        epochs=args.epochs,
        workers=args.workers,
        concurrency=args.concurrency,
        seed=args.seed,
    )
    kept = len(report.rows) - report.trained
    print(
        f"fidelity: {len(report.rows)} archs ({report.trained} trained alone now, {kept} "
        f"kept from before), {report.train_s:.0f}s of standalone training in "
        f"{report.wall_s:.0f}s"
    )
    if report.busy is not None:
        print(
            f"  {report.concurrency} archs at once kept the trials {report.busy:.0%} busy "
            f"over {report.training_wall_s:.0f}s"
        )
    for metric, stats in report.agreement.items():
        print("\n".join(describe_agreement(metric, stats)))
    for path in report.files:
        print(f"  {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .trial_export import export_trial

    if Path(args.target).is_file():  # an experiment: its run wherever it lives
        result = export_trial(None, args.trial, args.format, plan=_plan(args.target),
                              out=args.out)  # fmt: skip
    else:
        result = export_trial(args.target, args.trial, args.format, out=args.out)
    for name, value in result.reproduced.items():
        recorded = result.record["metrics"].get(name)
        print(f"  {name}: exported model {value:.4g} (trial recorded {recorded:.4g})")
    if result.model_file is not None:
        print(f"  {args.format}: {result.model_file}")
    print(f"exported trial {args.trial}: {result.arch_file}")
    return 0


def _target_argument(parser: argparse.ArgumentParser, experiment_means: str) -> None:
    """The ``RUN_DIR|EXPERIMENT`` argument of the commands that read a finished run: a run
    directory (a path or a cloud URI), or an experiment file, meaning ``experiment_means``
    (how a laptop reaches a cluster run)."""
    parser.add_argument(
        "target",
        metavar="RUN_DIR|EXPERIMENT",
        help=f"a run directory (a path or a cloud URI), or an experiment file: "
        f"{experiment_means} (a cluster run's, from a laptop)",
    )


def _int_list(text: str) -> list[int]:
    """argparse type: ``50,100,200`` -> a list of non-negative integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def cmd_bench_search(args: argparse.Namespace) -> int:
    """Score strategies on a tabular space against its whole table (nasforge.benchmark)."""
    import time

    from .benchmark import prepare_bench_search, space_label, summary_lines, write_results

    start = time.perf_counter()
    bench, run_dir = prepare_bench_search(
        args.experiment,
        strategies=[n for n in args.strategies.split(",") if n],
        strategy_options=args.strategy_option,
        space_options=args.space_option,
        objectives=[n for n in (args.objectives or "").split(",") if n],
        seeds=args.seed_list if args.seed_list is not None else list(range(args.seeds)),
        budgets=args.budgets,
        max_proposals=args.max_proposals,
        run_dir=args.run_dir,
    )
    plan, truth = bench.plan, bench.truth
    goals = ", ".join(f"{o.direction} {o.metric}" for o in truth.objectives)
    print(
        f"bench-search: {plan.experiment.name} ({space_label(plan)}): {len(truth.values):,} "
        f"archs in the table; {goals}; {len(bench.strategies)} strategies x "
        f"{len(bench.seeds)} seeds x {bench.budget} evaluations",
        flush=True,
    )
    if plan.constraints:
        print("note: constraints are not part of the bench-search protocol: ignored")
    metric = truth.objectives[0].metric

    def progress(cell) -> None:
        hv = f", HV {cell.hv[-1]:.4f}" if cell.hv else ""
        best = f", best {metric} {cell.best[-1]:.4g}" if cell.best else ""
        print(
            f"bench-search: {cell.strategy} seed {cell.seed}: {cell.evaluations} evaluations, "
            f"{cell.proposals} proposals in {cell.wall_s:.1f}s{hv}{best}",
            file=sys.stderr,
            flush=True,
        )

    cells = bench.run(args.processes, on_cell=progress)
    rows, files = write_results(run_dir, bench, cells, log_x=args.log_x)
    for line in summary_lines(bench, rows):
        print(line)
    for cell in cells:
        if cell.note:
            print(f"note: {cell.note}")
    print(f"bench-search: {len(cells)} runs in {time.perf_counter() - start:.1f}s")
    for path in files:
        print(f"  {path}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    from .engine.run_location import TRAINING_FOLDERS, local_run_dir
    from .engine.storage import mask_url, storage_url
    from .engine.study import open_study
    from .report import load_run

    # an experiment: its study wherever it lives (NASFORGE_STORAGE…); else a run directory
    plan = _plan(args.target) if Path(args.target).is_file() else None
    target = plan.experiment.resolved_run_dir if plan else args.target
    with local_run_dir(target, skip=TRAINING_FOLDERS) as run_dir:
        if plan is not None:
            study, url = open_study(plan, run_dir, create=False)
        else:
            plan, study = load_run(run_dir)
            url = storage_url(plan.experiment.search.storage, run_dir)
        print(
            f"dashboard for {mask_url(url)} on http://{args.host}:{args.port}/ (Ctrl-C to stop)",
            flush=True,
        )
        run_server(study._storage, host=args.host, port=args.port)  # the storage opened above
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import registry

    reg = registry()
    rows = [
        {"kind": i.kind, "name": i.name, "plugin": i.plugin, "distribution": i.distribution,
         "version": i.version, "summary": i.summary}
        for i in reg
    ]  # fmt: skip
    for missing in reg.unavailable:
        rows.append({"kind": "unavailable", "name": "-", "plugin": missing.plugin,
                     "distribution": missing.distribution, "version": None,
                     "summary": f"not loaded: it {missing.hint}"})  # fmt: skip
    for plugin, hooks in reg.lifecycle_hooks().items():
        dist, version = reg.distributions.get(plugin, (None, None))
        rows.append({"kind": "hooks", "name": ", ".join(hooks), "plugin": plugin,
                     "distribution": dist, "version": version, "summary": "lifecycle hooks"})  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _print_table(
        ("KIND", "NAME", "PLUGIN", "DISTRIBUTION", "SUMMARY"),
        [
            (r["kind"], r["name"], r["plugin"],
             f"{r['distribution'] or '-'} {r['version'] or ''}".strip(), r["summary"])
            for r in rows
        ],
    )  # fmt: skip
    return 0


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, two spaces apart; the last one is not padded."""
    table = [header, *rows]
    widths = [max(len(r[c]) for r in table) for c in range(len(header) - 1)]
    for r in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=False))
            + "  "
            + r[-1]
        )


def cmd_env(args: argparse.Namespace) -> int:
    """What a bug report needs (nasforge.environment)."""
    from .environment import Difference, default_lock, environment_report, format_report

    lock = Path(args.lock) if args.lock else default_lock()
    report = environment_report(lock)
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.diff:
        if lock is None:
            raise NasforgeError("no lock found: give --lock constraints.txt or set NASFORGE_LOCK")
        for difference in report["differences"]:
            print(Difference(**difference))
    else:
        print("\n".join(format_report(report)))
    return 0


def _quiet_job_sdk(args: argparse.Namespace) -> None:
    """Ray's loggers (some at INFO of their own) all print through the ``ray`` logger's
    handler, set up when Ray is imported: keep uploads and websocket notes for ``-v``. Only
    Ray's own handlers are quietened: others on that logger (Ray adds the root logger's,
    e.g. pytest's log capture) belong to whoever embeds nasforge."""
    if not args.verbose:
        import ray  # noqa: F401

        for handler in logging.getLogger("ray").handlers:
            if type(handler).__module__.split(".")[0] == "ray":
                handler.setLevel(logging.ERROR)


def cmd_submit(args: argparse.Namespace) -> int:
    from . import jobs
    from .engine.storage import mask_url

    _quiet_job_sdk(args)
    job_id = jobs.submit(args.experiment, args.address, args.working_dir, scratch=args.scratch)
    print(f"submitted {job_id} to {jobs.resolve_address(args.address)}")
    passed = jobs.job_env()
    if "NASFORGE_STORAGE" in passed:
        print(f"  study storage {mask_url(passed['NASFORGE_STORAGE'])} (NASFORGE_STORAGE)")
    if "PGPASSWORD" in passed:
        print("  PGPASSWORD passed on to the job")
    if "NASFORGE_RUN_ROOT" in passed:
        print(f"  run directories under {passed['NASFORGE_RUN_ROOT']} (NASFORGE_RUN_ROOT)")
    where = f" --address {args.address}" if args.address else ""
    print(f"  follow it:   nasforge jobs logs {job_id} --follow{where}")
    if not args.scratch:
        print(f"  results:     nasforge report {args.experiment} (from the shared study)")
    print(f"  stop it:     nasforge jobs stop {job_id}{where}", flush=True)
    if args.follow:
        return _follow(job_id, args.address)
    if args.no_wait:
        return 0
    info = jobs.wait(job_id, args.address, until=("RUNNING", *jobs.TERMINAL), timeout=120)
    return _job_state(info)


def _job_state(info) -> int:
    """Print ``job ID: STATUS`` (with Ray's message if it failed or was stopped); exit
    status 1 if it failed or was stopped, else 0."""
    ended_badly = info.status.value in ("FAILED", "STOPPED")
    message = f" ({info.message})" if ended_badly and info.message else ""
    print(f"job {info.submission_id}: {info.status.value}{message}",
          file=sys.stderr if ended_badly else sys.stdout)  # fmt: skip
    return 1 if ended_badly else 0


def _follow(job_id: str, address: str | None) -> int:
    from . import jobs

    try:
        info = jobs.follow_logs(job_id, lambda text: print(text, end="", flush=True), address)
    except KeyboardInterrupt:
        print(f"stopped following; job {job_id} goes on", file=sys.stderr)
        return 130
    return _job_state(info)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from datetime import datetime

    from . import jobs

    _quiet_job_sdk(args)
    table = []
    for job in jobs.list_jobs(args.address):
        if job.submission_id is None:  # a driver that connected directly, not a job
            continue
        started = datetime.fromtimestamp(job.start_time / 1000) if job.start_time else None
        table.append((job.submission_id, job.status.value,
                      (job.metadata or {}).get("nasforge_experiment", "-"),
                      f"{started:%Y-%m-%d %H:%M:%S}" if started else "-", job.entrypoint))  # fmt: skip
    _print_table(("SUBMISSION ID", "STATUS", "EXPERIMENT", "STARTED", "ENTRYPOINT"), table)
    return 0


def cmd_jobs_status(args: argparse.Namespace) -> int:
    from . import jobs

    _quiet_job_sdk(args)
    info = jobs.status(args.job_id, args.address)
    print(f"{info.submission_id}: {info.status.value}")
    print(f"  experiment  {(info.metadata or {}).get('nasforge_experiment', '-')}")
    print(f"  entrypoint  {info.entrypoint}")
    if info.start_time and info.end_time:
        print(f"  ran         {(info.end_time - info.start_time) / 1000:.1f}s")
    if info.message:
        print(f"  message     {info.message}")
    return 0


def cmd_jobs_logs(args: argparse.Namespace) -> int:
    from . import jobs

    _quiet_job_sdk(args)
    if args.follow:
        return _follow(args.job_id, args.address)
    print(jobs.logs(args.job_id, args.address), end="")
    return 0


def cmd_jobs_stop(args: argparse.Namespace) -> int:
    from . import jobs

    _quiet_job_sdk(args)
    if not jobs.stop(args.job_id, args.address):
        info = jobs.status(args.job_id, args.address)
        print(f"job {args.job_id} had already ended: {info.status.value}")
        return 0
    info = jobs.wait(args.job_id, args.address, timeout=60)
    print(f"job {args.job_id}: {info.status.value}")
    return 0


def build_parser(plugin_commands: bool = True) -> argparse.ArgumentParser:
    """The command line: the core's commands, then (``plugin_commands``) those plugins add
    through ``register_commands``."""
    parser = argparse.ArgumentParser(
        prog="nasforge", description="One-shot, hardware-aware neural architecture search."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("run", cmd_run, "train (if configured), search, then report")
    p.add_argument("experiment", help="experiment YAML file")
    p.add_argument("--run-dir", help="override the run directory (default runs/<name>)")
    p = add("train", cmd_train, "train (or resume training) the experiment's supernet")
    p.add_argument("experiment")
    p.add_argument("--run-dir")
    p = add("search", cmd_search, "run or resume the search phase")
    p.add_argument("experiment")
    p.add_argument("--run-dir")
    p = add("validate", cmd_validate, "check an experiment file without running it")
    p.add_argument("experiment")
    p = add(
        "report",
        cmd_report,
        "write trials.csv, pareto.csv/json/png of a run, or of an experiment's shared study "
        "(a cluster run's, from a laptop)",
    )
    _target_argument(p, "its study wherever it lives (NASFORGE_STORAGE, search.storage)")
    p.add_argument("--out", help="with an experiment: where to write (default: its run_dir)")
    p = add(
        "fidelity",
        cmd_fidelity,
        "train archs alone (Ray Tune trials in parallel) and measure how well the supernet "
        "ranks them: Kendall tau / Spearman rho with bootstrap intervals, top-k overlap, "
        "per-arch gap; fidelity.csv/json/png in the run directory; resumable",
    )
    p.add_argument("run_dir")
    p.add_argument("--archs", type=int, default=16, metavar="K", help="archs to train (16)")
    p.add_argument(
        "--from",
        dest="source",
        default="spread",
        metavar="spread|pareto|ARCHS.json",
        help="spread over cost and space, the front included (default); the Pareto front; "
        "or a JSON list of archs",
    )
    p.add_argument("--epochs", type=int, help="standalone epochs (default: the recipe's)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Ray Train workers per arch (default 1: archs train side by side, each on the "
        "recipe's global batch)",
    )
    p.add_argument("--concurrency", type=int, help="archs at once (default: what fits)")
    p.add_argument("--seed", type=int, default=0, help="seed of the arch choice and bootstrap")
    p = add(
        "export",
        cmd_export,
        "export a trial's arch and metrics (and with --format its static subnet) to "
        "RUN_DIR/subnets/N/ or --out",
    )
    _target_argument(p, "its study and supernet wherever they live")
    p.add_argument("--out", help="where to write (default: RUN_DIR/subnets/N)")
    p.add_argument("--trial", type=int, required=True)
    p.add_argument(
        "--format",
        help="also write the static subnet: torchscript, onnx, or a format of the space's "
        "own (hf, hf-packed for llm.llama)",
    )
    p = add(
        "dashboard", cmd_dashboard, "serve optuna-dashboard for a run's or an experiment's study"
    )
    _target_argument(p, "its study in the storage it names or NASFORGE_STORAGE")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080)
    p = add(
        "bench-search",
        cmd_bench_search,
        "score search strategies on a tabular space (every objective read from a table): "
        "strategies x seeds x budgets, normalised hypervolume and best found versus "
        "evaluations, against the whole table; curves.csv, summary.csv, anytime.png",
    )
    p.add_argument("experiment", help="experiment YAML file (its objectives must be tabular)")
    p.add_argument(
        "--strategies",
        default="ehvi,tpe,random",
        help="registered strategy names, comma-separated (default ehvi,tpe,random)",
    )
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    seeds.add_argument("--seed-list", type=_int_list, help="explicit seeds, e.g. 0,7,42")
    p.add_argument(
        "--budgets",
        type=_int_list,
        default=[50, 100, 200],
        help="evaluations (new archs) to report at; runs go to the largest (default 50,100,200)",
    )
    p.add_argument(
        "--objectives",
        help="metrics to benchmark, comma-separated: one (best found, gap to the table's "
        "best) or two (hypervolume); default the experiment's",
    )
    p.add_argument(
        "--strategy-option",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="a strategy option (validated by the strategy); repeatable. The experiment's "
        "search.options apply to its own strategy",
    )
    p.add_argument(
        "--space-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a space option, e.g. dataset=citeseer; repeatable",
    )
    p.add_argument(
        "--max-proposals",
        type=int,
        default=20,
        metavar="FACTOR",
        help="stop a run after FACTOR x budget proposals (a strategy stuck re-proposing); "
        "default 20",
    )
    p.add_argument(
        "--processes", type=int, default=1, help="run (strategy, seed) cells in N processes"
    )
    p.add_argument("--log-x", action="store_true", help="log-scale evaluations in anytime.png")
    p.add_argument("--run-dir", help="where to write (default runs/<name>-bench-search)")
    p = add("plugins", cmd_plugins, "list installed plugins and what they register")
    p.add_argument("--json", action="store_true")
    p = add(
        "env",
        cmd_env,
        "what a bug report needs: versions (and whether each is the locked one), the torch "
        "build, where Ray and the study storage would connect",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--lock", help="the lock to compare with (default: the repository's "
                   "constraints.txt, or NASFORGE_LOCK)")  # fmt: skip
    p.add_argument("--diff", action="store_true",
                   help="print only the installed packages whose version differs from the lock")  # fmt: skip

    address_help = (
        "the cluster's job server, http://HOST:8265 (default: RAY_API_SERVER_ADDRESS or "
        "RAY_ADDRESS if a URL, else http://127.0.0.1:8265)"
    )
    p = add(
        "submit",
        cmd_submit,
        "run an experiment on a Ray cluster as a job: uploads the working directory (less "
        "runs/, virtual environments and .nasforgeignore) and runs `nasforge run` there",
    )
    p.add_argument("experiment", help="experiment YAML file, inside the working directory")
    p.add_argument("--address", help=address_help)
    p.add_argument("--working-dir", default=".", help="directory to upload (default: cwd)")
    p.add_argument(
        "--scratch",
        action="store_true",
        help="a throw-away run: allow a study or run directory inside the job's working "
        "directory, which Ray deletes with the job",
    )
    wait = p.add_mutually_exclusive_group()
    wait.add_argument("--follow", action="store_true", help="print the job's output until it ends")
    wait.add_argument("--no-wait", action="store_true", help="return once submitted")
    help = "list, inspect, follow and stop jobs on a Ray cluster"
    p = sub.add_parser("jobs", help=help, description=help)
    jobs = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    for name, func, help in [
        ("list", cmd_jobs_list, "every job the cluster knows"),
        ("status", cmd_jobs_status, "a job's status and message"),
        ("logs", cmd_jobs_logs, "a job's output so far (--follow: until it ends)"),
        ("stop", cmd_jobs_stop, "stop a job and wait until it has"),
    ]:
        q = jobs.add_parser(name, help=help, description=help)
        q.set_defaults(func=func)
        if name != "list":
            q.add_argument("job_id", metavar="ID", help="submission id (raysubmit_...)")
        q.add_argument("--address", help=address_help)
        if name == "logs":
            q.add_argument("--follow", action="store_true")
    if plugin_commands:
        _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: Any) -> None:
    """Every command a plugin registered (``register_commands``), beside the core's."""
    from .errors import PluginError
    from .plugins import registry

    for name in registry().names("command"):
        item = registry().get("command", name)
        if name in sub.choices:
            raise PluginError(
                f"plugin {item.origin} registers command '{name}', which nasforge already has"
            )
        help = item.extras.get("help") or item.summary
        p = sub.add_parser(name, help=help, description=help)
        if item.extras.get("arguments") is not None:
            item.extras["arguments"](p)
        p.set_defaults(func=item.factory)


def _core_command(argv: list[str]) -> bool:
    """Whether ``argv`` names one of the core's commands (so no plugin needs loading)."""
    words = [a for a in argv if not a.startswith("-")]
    if (
        not words
        or "-h" in argv[: argv.index(words[0])]
        or "--help" in argv[: argv.index(words[0])]
    ):
        return False
    parser = build_parser(plugin_commands=False)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return words[0] in sub.choices


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(plugin_commands=not _core_command(argv))
    except NasforgeError as exc:  # a plugin that cannot be loaded: say which
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not args.verbose:
        logging.basicConfig(level=logging.ERROR)
        # nasforge's own warnings (a database being waited for…) still reach the user
        logging.getLogger("nasforge").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return args.func(args)
    except NasforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
