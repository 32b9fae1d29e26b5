"""Elastic overhead of the LLaMA supernet: a forward with an arch active against the same
arch extracted as a physically smaller ``LlamaForCausalLM`` (target: median ratio <= 1.15).

Both run in this process on the CPU, interleaved per arch (so the machine's drift hits both
alike), on ``--archs`` sampled archs of the ``llm.llama`` space over a randomly initialised
model with SmolLM2-135M's shapes (30 layers, hidden 576, 9 heads in 3 KV groups, MLP 1,536,
vocabulary 49,152; ``--small`` for a quick run), with the default choices plus 4- and 8-bit
layers. The supernet quantises weights and adds LoRA in every forward; the extracted model
has them folded into its weights.

    python benchmarks/bench_llm_elastic.py [--archs 20] [--tokens 128] [--repeats 5] [--small]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from nasforge_llm.space import LlamaSpace
from nasforge_llm.supernet import LlamaSupernet

SMOLLM2_135M = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
SMALL = {**SMOLLM2_135M, "num_hidden_layers": 6, "vocab_size": 4096}


def median_time(forward, x: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``forward(x)`` after one warm-up call."""
    forward(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="6 layers, 4,096 tokens")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = SMALL if args.small else SMOLLM2_135M
    space = LlamaSpace(config=config, bits=[4, 8, 16], seq_len=args.tokens)
    supernet = LlamaSupernet(space).eval()
    for name, parameter in supernet.named_parameters():  # adapters that are not zero
        if "lora_B" in name:
            parameter.normal_(0, 0.01)
    x = torch.randint(0, config["vocab_size"], (1, args.tokens))
    ratios = []
    for seed in range(args.archs):
        arch = space.sample(seed)
        supernet.set_active(arch)
        subnet = supernet.extract(arch).eval()
        shared = median_time(supernet, x, args.repeats)
        alone = median_time(subnet, x, args.repeats)
        ratios.append(shared / alone)
        print(
            f"arch {seed:2d}: {len(space.kept_layers(arch))} layers, supernet {shared * 1e3:7.1f} ms,"
            f" extracted {alone * 1e3:7.1f} ms, ratio {shared / alone:.3f}"
        )
    print(
        f"median ratio supernet / extracted over {len(ratios)} archs: "
        f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
        "target <= 1.15"
    )


if __name__ == "__main__":
    main()
