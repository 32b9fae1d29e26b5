"""``llm.throughput``: measured prefill and decode speed of an extracted sub-network on the
trial's device, in tokens per second (median of ``repeats`` runs after ``warmup`` runs).

*Prefill* is one forward over a ``prompt_tokens`` prompt (batch 1); *decode* is
``new_tokens`` greedy steps after it, one token at a time with the KV cache, timed without
the prefill. The sub-network is the physically smaller model ``extract(arch)`` builds
(weights quantised to their bits and adapters merged, in fp32 here: what the bits save is
memory, which ``llm.memory`` counts, not arithmetic on this backend).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from nasforge import Arch, EvalContext, Hardware, Metric

from .space import LlamaSpace


class ThroughputOptions(BaseModel):
    """Options of ``llm.throughput``."""

    model_config = ConfigDict(extra="forbid")
    prompt_tokens: int = Field(128, ge=1)
    new_tokens: int = Field(32, ge=1)
    warmup: int = Field(1, ge=0)
    repeats: int = Field(3, ge=1)
    threads: int | None = Field(None, ge=1, description="torch threads while measuring")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def measure_speed(hf: Any, prompt_tokens: int, new_tokens: int, device: str) -> tuple[float, float]:
    """Seconds of one prefill and of ``new_tokens`` cached decode steps of ``hf``."""
    from transformers import DynamicCache

    vocab = hf.config.vocab_size
    prompt = torch.randint(0, vocab, (1, prompt_tokens), generator=torch.Generator().manual_seed(0))
    prompt = prompt.to(device)
    cache = DynamicCache(config=hf.config)
    _sync(device)
    start = time.perf_counter()
    output = hf(input_ids=prompt, cache=cache, use_cache=True)
    _sync(device)
    prefill = time.perf_counter() - start
    token = output.logits[:, -1:].argmax(-1)
    start = time.perf_counter()
    for _ in range(new_tokens):
        token = hf(input_ids=token, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
    _sync(device)
    return prefill, time.perf_counter() - start


class LlamaThroughput(Hardware):
    """Prefill and decode tokens per second of the extracted sub-network."""

    Options = ThroughputOptions
    space_types: ClassVar[tuple[type, ...]] = (LlamaSpace,)

    def __init__(self, space: LlamaSpace, **options: Any):
        super().__init__(space, **options)
        self.config = ThroughputOptions(**options)
        self.metrics = {
            "prefill_tok_s": Metric("prefill_tok_s", "tok/s", "maximize", "prompt tokens per s"),
            "decode_tok_s": Metric("decode_tok_s", "tok/s", "maximize", "generated tokens per s"),
        }

    def measure(self, arch: Arch, subnet: Any, context: EvalContext) -> dict[str, float]:
        """Median speeds of ``subnet`` (an extracted :class:`LlamaSubnet`)."""
        c = self.config
        hf = subnet.hf.to(context.device).eval()
        threads = torch.get_num_threads()
        if c.threads:
            torch.set_num_threads(c.threads)
        try:
            runs = [measure_speed(hf, c.prompt_tokens, c.new_tokens, context.device)
                    for _ in range(c.warmup + c.repeats)][c.warmup:]  # fmt: skip
        finally:
            torch.set_num_threads(threads)
        prefill = statistics.median(r[0] for r in runs)
        decode = statistics.median(r[1] for r in runs)
        return {"prefill_tok_s": c.prompt_tokens / prefill, "decode_tok_s": c.new_tokens / decode}
