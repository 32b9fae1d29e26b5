"""Elastic-op overhead: supernet forward with an arch active vs. its extracted static subnet.

On the ``cnn.mobilenetv3`` space at its default (digits) sizes, 32x32 inputs (or, with
``--space tdnn.ecapa``, the EfficientTDNN space at its CPU sizes, one second of filterbanks),
batch 64, eval mode, no gradients, CPU with a fixed thread count: for each of 20 random archs, time both
forwards alternately (so load on the machine hits both alike), take each one's median over
the repeats and their ratio; the reported ratio is the median over archs (target <= 1.15).
Variants: Once-for-All kernel transform with the eval-time weight cache (the default),
the transform without the cache, and centre-crop kernels.

    python benchmarks/bench_elastic.py            # full run, prints a table then JSON
    python benchmarks/bench_elastic.py --quick    # seconds; for tests
    python benchmarks/bench_elastic.py --space tdnn.ecapa
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from nasforge.nn import eval_weight_cache


def build(space_name: str, kernel_mode: str):
    """The space and its supernet (eval mode) at their default sizes."""
    if space_name == "tdnn.ecapa":
        from nasforge_tdnn.space import TDNNSpace
        from nasforge_tdnn.supernet import TDNNSupernet

        space = TDNNSpace(kernel_mode=kernel_mode)
        return space, TDNNSupernet(space).eval()
    from nasforge_cnn.mobilenetv3 import MobileNetV3Supernet
    from nasforge_cnn.spaces import MobileNetV3Space

    space = MobileNetV3Space(kernel_mode=kernel_mode)
    return space, MobileNetV3Supernet(space).eval()


def _time_pair(supernet, static, x, repeats: int) -> tuple[float, float]:
    """Median seconds of each forward, timed alternately after one warm-up each."""
    times: tuple[list[float], list[float]] = ([], [])
    with torch.no_grad():
        supernet(x)
        static(x)
        for _ in range(repeats):
            for model, out in ((supernet, times[0]), (static, times[1])):
                start = time.perf_counter()
                model(x)
                out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def measure(
    space_name: str, kernel_mode: str, cache: bool, archs: int, repeats: int, batch: int, seed: int
) -> dict:
    """Per-arch timings of one variant, summarised."""
    torch.manual_seed(seed)
    space, supernet = build(space_name, kernel_mode)
    rows = []
    with eval_weight_cache(cache):
        for i in range(archs):
            arch = space.sample(seed + i)
            static = supernet.extract(arch).eval()
            supernet.set_active(arch)
            x = torch.randn(batch, *space.input_shape(arch))
            t_super, t_static = _time_pair(supernet, static, x, repeats)
            rows.append((t_super, t_static, t_super / t_static))
    return {
        "kernel_mode": kernel_mode,
        "cache": cache,
        "supernet_ms": 1e3 * statistics.median(r[0] for r in rows),
        "static_ms": 1e3 * statistics.median(r[1] for r in rows),
        "ratio": statistics.median(r[2] for r in rows),
        "ratio_max": max(r[2] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--space", choices=["cnn.mobilenetv3", "tdnn.ecapa"], default="cnn.mobilenetv3"
    )
    parser.add_argument("--quick", action="store_true", help="2 archs, 2 repeats, batch 4")
    args = parser.parse_args()
    if args.quick:
        args.archs, args.repeats, args.batch = 2, 2, 4
    torch.set_num_threads(args.threads)
    variants = [("transform", True), ("transform", False), ("crop", True)]
    results = [
        measure(args.space, m, c, args.archs, args.repeats, args.batch, args.seed)
        for m, c in variants
    ]

    print(f"{args.space} defaults, batch {args.batch}, eval, {args.threads} thread(s), "
          f"median over {args.archs} archs x {args.repeats} repeats")  # fmt: skip
    print(
        f"{'kernels':<10} {'cache':<6} {'static ms':>10} {'supernet ms':>12} {'ratio':>7} {'worst':>7}"
    )
    for r in results:
        print(
            f"{r['kernel_mode']:<10} {'yes' if r['cache'] else 'no':<6} {r['static_ms']:>10.2f} "
            f"{r['supernet_ms']:>12.2f} {r['ratio']:>7.3f} {r['ratio_max']:>7.3f}"
        )
    summary = {
        "ratio": results[0]["ratio"],
        "target": 1.15,
        "space": args.space,
        "threads": args.threads,
        "batch": args.batch,
        "archs": args.archs,
        "variants": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
