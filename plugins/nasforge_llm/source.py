"""Where the base LLaMA comes from: a Hugging Face directory, a GGUF file, or a config.

``model: PATH`` names a local Hugging Face model directory (``config.json`` + safetensors)
or a ``.gguf`` file (every tensor de-quantised to fp32 by transformers), or is
``smollm2-135m`` (:mod:`nasforge_llm.smollm2`: fetched and converted once); ``config: {...}``
gives ``LlamaConfig`` fields for a randomly initialised model (seeded by ``seed``), which is
what the tests and ``examples/llm_tiny.yaml`` use. :func:`llama_sizes` reads only the
configuration (the space needs the sizes, never the weights); :func:`load_llama` loads the
model on the CPU, in fp32 or, with ``dtype: bfloat16``, with its base weights in bf16 (a
frozen 7-8 B base on one GPU; the LoRA adapters stay fp32).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .gguf import gguf_location, load_gguf_model


class ModelSource(BaseModel):
    """The base model: exactly one of ``model`` and ``config``."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(
        None, description="a Hugging Face model directory or a .gguf file (local paths)"
    )
    config: dict[str, Any] | None = Field(
        None, description="LlamaConfig fields of a randomly initialised model"
    )
    seed: int = Field(0, ge=0, description="initialisation seed of a config-built model")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="the base model's weights (adapters are always float32)"
    )

    def check_source(self) -> None:
        """Raise ``ValueError`` unless exactly one source is given."""
        if (self.model is None) == (self.config is None):
            raise ValueError("give exactly one of 'model' (a local path) and 'config'")


@dataclass(frozen=True)
class LlamaSizes:
    """The sizes of a LLaMA model that its search space is made of."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool = False

    @property
    def heads_per_group(self) -> int:
        """Query heads that share one KV head (grouped-query attention)."""
        return self.num_heads // self.num_kv_heads


def model_path(spec: str) -> Path:
    """The local path a ``model:`` (or ``tokenizer:``) value names, aliases resolved."""
    from . import smollm2

    if spec == smollm2.ALIAS:
        return smollm2.model_dir()
    return Path(spec).expanduser()


def llama_config(source: ModelSource) -> Any:
    """The ``LlamaConfig`` of ``source`` (no weights read)."""
    from transformers import AutoConfig, LlamaConfig

    if source.config is not None:
        try:
            return LlamaConfig(**source.config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config: not a LlamaConfig: {exc}") from None
    path = model_path(source.model)
    if not path.exists():
        raise ValueError(f"model: {path} does not exist")
    gguf = gguf_location(path)
    if gguf is not None:
        config = AutoConfig.from_pretrained(gguf[0], gguf_file=gguf[1])
    elif (path / "config.json").is_file():
        config = AutoConfig.from_pretrained(path)
    else:
        raise ValueError(f"model: {path} is neither a .gguf file nor a directory with config.json")
    if config.model_type != "llama":
        raise ValueError(f"model: {path} is a '{config.model_type}' model, not a LLaMA")
    return config


def llama_sizes(source: ModelSource) -> LlamaSizes:
    """The sizes of ``source``'s model; raises ``ValueError`` naming a bad source."""
    if source.model is not None and not gguf_location(Path(source.model)):
        config_file = model_path(source.model) / "config.json"
        if config_file.is_file():  # a plain JSON read, without importing transformers
            values = json.loads(config_file.read_text())
            if values.get("model_type") == "llama":
                return _sizes(values)
    config = llama_config(source)
    return _sizes(config.to_dict())


def _sizes(values: dict[str, Any]) -> LlamaSizes:
    heads = int(values["num_attention_heads"])
    kv_heads = int(values.get("num_key_value_heads") or heads)
    hidden = int(values["hidden_size"])
    head_dim = int(values.get("head_dim") or hidden // heads)
    if heads % kv_heads:
        raise ValueError(f"{heads} attention heads do not split into {kv_heads} KV groups")
    return LlamaSizes(
        num_layers=int(values["num_hidden_layers"]),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=int(values["intermediate_size"]),
        vocab_size=int(values["vocab_size"]),
        tied_embeddings=bool(values.get("tie_word_embeddings", False)),
    )


def load_llama(source: ModelSource) -> Any:
    """The model of ``source`` as a ``LlamaForCausalLM`` on the CPU in ``source.dtype``, in
    eval mode."""
    import torch
    from transformers import LlamaForCausalLM

    dtype = getattr(torch, source.dtype)
    if source.config is not None:
        config = llama_config(source)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(source.seed)
            model = LlamaForCausalLM(config)
        return model.to(dtype).eval()
    path = model_path(source.model)
    if gguf_location(path) is not None:
        model = load_gguf_model(path).to(dtype)
    else:
        model = LlamaForCausalLM.from_pretrained(path, dtype=dtype)
    return model.eval()
