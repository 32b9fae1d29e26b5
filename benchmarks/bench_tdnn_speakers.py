"""Does the speaker-verification search pay off? On a finished run of a ``tdnn.ecapa``
experiment (``examples/tdnn_speakers.yaml``), on the run's own trial list:

1. **Baselines beside the front**: mean-MFCC cosine scoring and the pretrained GE2E speaker
   encoder of ``resemblyzer`` (EER, minDCF, MACs per second of audio; ``tdnn.eer``'s
   baselines, as the run's report measured them into ``baselines.json``), against the
   run's Pareto front over (EER, MACs);
2. **The front's span**: largest / smallest MACs on the front (target >= 4x);
3. **Best subnet vs the baselines** (target: beats both) and **some subnet under a quarter
   of the largest subnet's MACs beating mean-MFCC**.

4. **The largest subnet against the same arch trained alone** with the same budget (target:
   within 10%, relative): read from ``RUN_DIR/fidelity.json`` when ``nasforge fidelity
   RUN_DIR --archs 2`` has run (largest and smallest, ``tdnn.progressive``'s standalone
   recipe: the phases' epochs, one arch).

Prints a table and writes ``RUN_DIR/bench_tdnn_speakers.json``.

    python benchmarks/bench_tdnn_speakers.py runs/tdnn_speakers
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasforge.baselines import measure_baselines
from nasforge.report import load_run, trial_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    plan, study = load_run(args.run_dir)
    records = [r for r in trial_records(plan, study.trials) if r.state == "COMPLETE"]
    largest_key = plan.space.key(plan.space.largest())
    largest = [r for r in records if r.arch and plan.space.key(r.arch) == largest_key]
    points = sorted((r.metrics["macs_m"], r.metrics["eer"], r.number) for r in records)
    front, best = [], float("inf")
    for macs, eer, number in points:  # cheapest first: a point is on the front if it improves
        if eer < best:
            front.append({"trial": number, "macs_m": macs, "eer": eer})
            best = eer
    measured = measure_baselines(plan, args.run_dir)
    if measured.errors:
        raise SystemExit("; ".join(measured.errors))
    baselines = [{"name": b["name"], **b["metrics"]} for b in measured.rows]
    largest_macs = max(p[0] for p in points)
    mfcc = next(b for b in baselines if "MFCC" in b["name"])
    cheap_better = [p for p in front if p["macs_m"] < largest_macs / 4 and p["eer"] < mfcc["eer"]]
    summary = {
        "front": front,
        "front_span": front[-1]["macs_m"] / front[0]["macs_m"],
        "best_eer": front[-1]["eer"],
        "largest_arch_eer": largest[0].metrics["eer"] if largest else None,
        "largest_macs_m": largest_macs,
        "baselines": baselines,
        "beats_both_baselines": all(front[-1]["eer"] < b["eer"] for b in baselines),
        "under_quarter_macs_beating_mfcc": cheap_better,
    }
    print(f"{'':<28} {'EER %':>7} {'minDCF':>7} {'MACs/s (M)':>11}")
    for b in baselines:
        print(f"{b['name']:<28} {b['eer']:>7.2f} {b['min_dcf']:>7.3f} {b['macs_m']:>11.1f}")
    for p in front:
        print(
            f"{'front trial ' + str(p['trial']):<28} {p['eer']:>7.2f} {'':>7} {p['macs_m']:>11.1f}"
        )
    fidelity = args.run_dir / "fidelity.json"
    if fidelity.exists():
        rows = {r["why"]: r for r in json.loads(fidelity.read_text())["rows"]}
        summary["alone"] = {
            why: {
                "shared_eer": row["shared_eer"],
                "alone_eer": row["alone_eer"],
                "relative": row["shared_eer"] / row["alone_eer"] - 1,
                "epochs": row["epochs"],
            }
            for why, row in rows.items()
        }
        if "largest" in summary["alone"]:
            summary["largest_within_10pct_of_alone"] = (
                summary["alone"]["largest"]["relative"] <= 0.10
            )
    print(json.dumps({k: v for k, v in summary.items() if k != "front"}, indent=2, default=str))
    (args.run_dir / "bench_tdnn_speakers.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
