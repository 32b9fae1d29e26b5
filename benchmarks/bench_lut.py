"""Latency look-up table accuracy: LUT-predicted versus measured latency over random archs.

Target: median absolute percentage error <= 10 % over 50 random archs. By default the archs
come from a toy family of static MobileNet-like CNNs built here (per-block depthwise kernel
and width, resolution); ``--space NAME`` measures the subnets extracted from a registered
space's supernet instead (e.g. ``cnn.mobilenetv3``, untrained weights: latency does not
depend on them). Prints the figures as JSON (and writes per-arch rows with ``--csv``).

    python benchmarks/bench_lut.py [--space cnn.mobilenetv3] [--archs 50] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasforge import Arch, Categorical, PerLayer, SearchSpace


class ToyCnnSpace(SearchSpace):
    """A toy family of static MobileNet-like CNNs: per-block depthwise kernel and width."""

    def __init__(self) -> None:
        super().__init__(
            [
                Categorical("resolution", [32, 40, 48]),
                Categorical("depth", [2, 3, 4, 5]),
                PerLayer("kernel", [3, 5, 7], length="depth", max_length=5),
                PerLayer("width", [16, 24, 32, 48], length="depth", max_length=5),
            ]
        )

    def input_shape(self, arch: Arch) -> tuple[int, int, int]:
        """One image at the arch's resolution."""
        return (3, arch["resolution"], arch["resolution"])


def build_toy_cnn(arch: Arch) -> Any:
    """The static ``nn.Sequential`` of a :class:`ToyCnnSpace` arch: a stem, one depthwise-
    separable block per layer (stride 2 on odd blocks), a pooled linear head."""
    from torch import nn

    def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        return [
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        ]

    channels = 16
    layers: list[nn.Module] = [nn.Sequential(*conv_bn_relu(3, channels, 3, stride=2))]
    for i, (kernel, width) in enumerate(zip(arch["kernel"], arch["width"], strict=True)):
        block = [
            *conv_bn_relu(channels, channels, kernel, stride=1 + i % 2, groups=channels),
            *conv_bn_relu(channels, width, 1),
        ]
        layers.append(nn.Sequential(*block))
        channels = width
    layers.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)))
    return nn.Sequential(*layers).eval()


def registered_space(name: str) -> tuple[SearchSpace, Callable[[Arch], Any]]:
    """A registered space and a function extracting its (untrained) supernet's subnets."""
    from nasforge.plugins import registry

    item = registry().get("space", name)
    supernet_factory = item.extras.get("supernet")
    if supernet_factory is None:
        raise SystemExit(f"space {name!r} has no supernet: its archs have no model to time")
    space = item.factory()
    supernet = supernet_factory(space).eval()
    return space, lambda arch: supernet.extract(arch)


def run(
    space: SearchSpace,
    build_subnet: Callable[[Arch], Any],
    n_archs: int = 50,
    *,
    seed: int = 0,
    csv_path: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Check a fresh look-up table on ``n_archs`` random archs; the figures as a dict."""
    from nasforge_hw.lut import check_lut

    start = time.perf_counter()
    check = check_lut(space, build_subnet, n_archs, seed, csv_path=csv_path, **options)
    return {
        **check.summary(),
        "target_median_abs_pct_error": 10.0,
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", help="a registered space with a supernet (default: toy)")
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--csv", help="write per-arch rows here")
    args = parser.parse_args()
    if args.space:
        space, build = registered_space(args.space)
    else:
        space, build = ToyCnnSpace(), build_toy_cnn
    result = run(
        space,
        build,
        args.archs,
        seed=args.seed,
        csv_path=args.csv,
        device=args.device,
        threads=args.threads,
        batch_size=args.batch_size,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    result["space"] = args.space or "toy"
    result["command"] = shlex.join([Path(sys.executable).name, *sys.argv])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
