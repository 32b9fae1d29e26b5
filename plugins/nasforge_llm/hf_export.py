"""Hugging Face directories of extracted sub-networks, and nasforge's loader for them.

Two formats (``nasforge export RUN_DIR --trial N --format hf`` or ``hf-packed``):

- ``hf``: what ``save_pretrained`` writes — ``config.json`` and ``model.safetensors`` with
  float32 weights (each layer's weights quantised to its bits and de-quantised, adapters
  merged), plus the tokenizer when the base model has one. When every kept layer has the
  same sizes, plain ``AutoModelForCausalLM.from_pretrained(dir)`` loads it and gives the
  trial's logits. Layers of different sizes cannot be described by a ``LlamaConfig``:
  ``config.json`` then lists each layer's sizes and :func:`load_pretrained` builds them.
- ``hf-packed``: the same directory with every projection below 16 bits stored the way
  ``llm.memory`` counts it — ``bits`` bits per weight, packed, an fp16 scale and minimum
  per group (``<projection>.qcodes`` / ``.qscale`` / ``.qlow``), and its LoRA adapter
  apart (``.lora_A``, ``.lora_B`` with the scale folded in). Only :func:`load_pretrained`
  reads it (it de-quantises to float32 and merges the adapters).

``config.json`` records, under ``"nasforge"``: the arch, each kept layer's bits and sizes
(``layers``: ``None`` when uniform), the quantisation group size and which projections are
packed.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from .quantization import QuantizedWeight, pack_codes, unpack_codes

#: the entry of config.json that nasforge writes
CONFIG_KEY = "nasforge"
WEIGHTS = "model.safetensors"


def empty_llama(config: Any, per_layer: list[dict[str, int]] | None) -> Any:
    """A ``LlamaForCausalLM`` of ``config`` on the meta device (no memory), its layers built
    for their own sizes when ``per_layer`` lists them."""
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    with torch.device("meta"):
        model = LlamaForCausalLM(config)
        for position, sizes in enumerate(per_layer or ()):
            layer_config = copy.copy(config)
            for key, value in sizes.items():
                setattr(layer_config, key, value)
            model.model.layers[position] = LlamaDecoderLayer(layer_config, position)
    return model


def save_hf(subnet: Any, out_dir: Path, packed: bool) -> Path:
    """Write ``subnet`` (a :class:`~nasforge_llm.supernet.LlamaSubnet`) to ``out_dir/hf``
    (or ``hf-packed``), atomically; return the folder."""
    from safetensors.torch import save_file

    target = Path(out_dir) / ("hf-packed" if packed else "hf")
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=out_dir))
    try:
        model = subnet.hf
        config = copy.deepcopy(model.config)
        config.architectures = ["LlamaForCausalLM"]
        setattr(config, CONFIG_KEY, {
            "arch": subnet.arch,
            "bits": subnet.bits,
            "layers": subnet.per_layer,
            "group_size": subnet.group_size,
            "packed": {name: q.bits for name, (q, _, _) in subnet.quantized.items()} if packed else {},
        })  # fmt: skip
        if packed:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            if config.tie_word_embeddings:
                state.pop("lm_head.weight", None)  # safetensors stores a tensor once
            for name, (weight, a, b) in subnet.quantized.items():
                del state[f"{name}.weight"]
                state[f"{name}.qcodes"] = pack_codes(weight.codes, weight.bits)
                state[f"{name}.qscale"] = weight.scale
                state[f"{name}.qlow"] = weight.low
                state[f"{name}.lora_A"] = a.contiguous()
                state[f"{name}.lora_B"] = b.contiguous()
            config.save_pretrained(partial)
            if model.generation_config is not None:
                model.generation_config.save_pretrained(partial)
            save_file(state, str(partial / WEIGHTS), metadata={"format": "pt"})
        else:
            model.save_pretrained(partial)
            config.save_pretrained(partial)  # the model's own, with the nasforge entry
        if subnet.tokenizer is not None:
            from .text import load_tokenizer

            load_tokenizer(subnet.tokenizer).save_pretrained(partial)
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def load_pretrained(path: str | os.PathLike[str], device: str = "cpu") -> Any:
    """A ``LlamaForCausalLM`` from a directory :func:`save_hf` wrote (either format; a
    plain Hugging Face directory loads as transformers would load it), in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json (not a Hugging Face model directory)")
    config = AutoConfig.from_pretrained(path)
    info = getattr(config, CONFIG_KEY, None) or {}
    if not info.get("layers") and not info.get("packed"):
        return AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    model = empty_llama(config, info.get("layers"))
    state = load_file(str(path / WEIGHTS))
    group_size = info["group_size"]
    for name, bits in info["packed"].items():
        rows, cols = model.get_submodule(name).weight.shape
        scale, low = state.pop(f"{name}.qscale"), state.pop(f"{name}.qlow")
        codes = unpack_codes(state.pop(f"{name}.qcodes"), bits, scale.numel() * group_size)
        stored = QuantizedWeight(
            codes.reshape(rows, -1), scale, low, bits, (rows, cols), group_size
        )
        a, b = state.pop(f"{name}.lora_A"), state.pop(f"{name}.lora_B")
        state[f"{name}.weight"] = (stored.dequantize() + b.float() @ a.float()).contiguous()
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ValueError(
            f"{path / WEIGHTS}: missing {sorted(set(missing) - tied)}, unexpected {unexpected}"
        )
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    rotary = type(model.model.rotary_emb)
    model.model.rotary_emb = rotary(config=config)  # its buffers are not saved: rebuild
    return model.to(device).eval()
