"""GGUF files as transformers reads them: every tensor de-quantised to a dense fp32
``LlamaForCausalLM``, and the tokenizer the file embeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def gguf_location(path: Path) -> tuple[str, str] | None:
    """``(folder, file name)`` of a ``.gguf`` path, as transformers loads it; else ``None``."""
    if path.suffix.lower() == ".gguf":
        return str(path.parent), path.name
    return None


def load_gguf_model(path: Path) -> Any:
    """The model of a ``.gguf`` file, dense fp32, marked as not quantised (its tensors are
    de-quantised already), so that it can be saved and trained."""
    import torch
    from transformers import LlamaForCausalLM

    folder, name = gguf_location(path)
    model = LlamaForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    return model


def load_gguf_tokenizer(path: Path) -> Any:
    """The tokenizer a ``.gguf`` file embeds."""
    from transformers import AutoTokenizer

    folder, name = gguf_location(path)
    return AutoTokenizer.from_pretrained(folder, gguf_file=name)
