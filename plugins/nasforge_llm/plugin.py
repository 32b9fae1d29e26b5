"""The ``nasforge_llm`` plugin: sub-networks of a LLaMA-family model.

Registered names (torch and transformers load only when a component is built):

- space ``llm.llama``: depth and which layers, KV groups, MLP width, LoRA rank per module
  group and weight bit-width, per layer, of a Hugging Face ``LlamaForCausalLM`` (a local
  directory, a GGUF file, or a ``LlamaConfig`` for a random model), with the supernet that
  realises it;
- task ``llm.text``: text in blocks of tokens (the standard library's docstrings by
  default, or your .txt/.jsonl files);
- trainer ``llm.lora_sandwich``: sandwich rule with in-place distillation on LoRA adapters
  over a frozen base (or every weight), on Ray Train; ``llm.qfa``: LLM-QFA's one adapter
  per bit-width and budget-first bit-width scheduler;
- estimators ``llm.perplexity`` (held-out perplexity by weight sharing) and
  ``llm.multiple_choice`` (accuracy on a local JSONL task by log-likelihood);
- hardware ``llm.memory`` (parameters, weight memory at each layer's bits and KV-cache
  memory, exact and free: no supernet needed) and ``llm.throughput`` (measured prefill and
  decode tokens per second of the extracted sub-network).
"""

from __future__ import annotations

from nasforge import (
    RegisterEstimator,
    RegisterHardware,
    RegisterSpace,
    RegisterTask,
    RegisterTrainer,
    hookimpl,
    lazy,
)

from .space import LlamaSpace

#: registered only when ``nasforge[llm]`` is installed (transformers, peft, gguf, accelerate)
requires_extra = "llm"


@hookimpl
def register_spaces(register: RegisterSpace) -> None:
    register(
        "llm.llama",
        LlamaSpace,
        supernet=lazy("nasforge_llm.supernet:LlamaSupernet"),
    )


@hookimpl
def register_hardware(register: RegisterHardware) -> None:
    register(
        "llm.memory", lazy("nasforge_llm.memory:LlamaMemory", "parameters, weight and KV memory")
    )
    register(
        "llm.throughput",
        lazy("nasforge_llm.throughput:LlamaThroughput", "prefill and decode tokens/s"),
    )


@hookimpl
def register_tasks(register: RegisterTask) -> None:
    register("llm.text", lazy("nasforge_llm.text:TextTask", "text in blocks of tokens"))


@hookimpl
def register_estimators(register: RegisterEstimator) -> None:
    register(
        "llm.perplexity",
        lazy("nasforge_llm.perplexity:PerplexityEstimator", "held-out perplexity"),
    )
    register(
        "llm.multiple_choice",
        lazy("nasforge_llm.choice:MultipleChoiceEstimator", "multiple-choice accuracy"),
    )


@hookimpl
def register_trainers(register: RegisterTrainer) -> None:
    register(
        "llm.lora_sandwich",
        lazy("nasforge_llm.training:LoraSandwichTrainer", "sandwich rule on LoRA adapters"),
    )
    register(
        "llm.qfa",
        lazy("nasforge_llm.training:QfaTrainer", "LLM-QFA: per-bit-width adapters, budget-first"),
    )
