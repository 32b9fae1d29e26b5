"""``nasforge lut``: build an experiment's latency look-up table and report its error.

Registered through ``register_commands`` (:mod:`nasforge_hw.plugin`), so the core's command
line knows nothing of look-up tables.
"""

from __future__ import annotations

import argparse
import json

from nasforge import NasforgeError, load_plan, local_run_dir


def lut_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="experiment YAML file")
    parser.add_argument("--run-dir", help="override the run directory (default runs/<name>)")
    parser.add_argument("--archs", type=int, default=50, help="random archs to check (default 50)")
    parser.add_argument("--seed", type=int, default=0)


def run_lut(args: argparse.Namespace) -> int:
    """Build (or extend) the experiment's latency look-up table and report its error
    against measured latency."""
    from .lut import check_lut

    plan = load_plan(args.experiment)
    if plan.supernet_factory is None:
        raise NasforgeError(
            f"{args.experiment}: space '{plan.experiment.space.name}' has no supernet to "
            "build subnets from"
        )
    # a bucket run directory is worked on locally, the table uploaded at the end
    with local_run_dir(args.run_dir or plan.experiment.resolved_run_dir) as run_dir:
        options = next(
            (dict(h.options) for h in plan.experiment.hardware if h.name == "hw.latency_lut"), {}
        )
        supernet = plan.build_supernet().eval()  # latency does not depend on the weights
        out = run_dir / "hw"
        out.mkdir(parents=True, exist_ok=True)
        check = check_lut(
            plan.space,
            lambda arch: supernet.extract(arch).eval(),
            args.archs,
            args.seed,
            run_dir=run_dir,
            csv_path=out / "lut_check.csv",
            **options,
        )
        summary = check.summary()
        (out / "lut_check.json").write_text(json.dumps(summary, indent=2))
        print(
            f"latency look-up table on {check.device_name} ({check.threads} thread(s)): "
            f"median absolute error {summary['median_abs_pct_error']:.1f}% over "
            f"{summary['n_archs']} random archs (max {summary['max_abs_pct_error']:.1f}%; the same "
            f"arch measured twice differs by {summary['median_repeat_abs_pct_error']:.1f}%)"
        )
        print(f"  {out / 'lut_check.csv'}")
    return 0
