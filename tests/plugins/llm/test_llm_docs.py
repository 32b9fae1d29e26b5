"""The README's recipe for a 7-8 B LLaMA on one GPU is a valid experiment: validated here
against a directory with Llama-3-8B's config.json (the space reads sizes, never weights)
and a small tokenizer of the tests' own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

pytest.importorskip("transformers", reason="nasforge[llm] is not installed")

from nasforge.cli import main

README = Path(__file__).resolve().parents[3] / "README.md"
LLAMA_3_8B = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
}  # fmt: skip


def recipe() -> dict:
    section = README.read_text().split("**Your own 7-8 B model on one GPU**", 1)[1]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


def small_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "</s>", *["the", "a", "supernet", "is", "trained", "once", "and", "searched"]]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="</s>")
    fast.save_pretrained(folder)


def test_the_readmes_8b_recipe_validates(tmp_path, capsys):
    model = tmp_path / "Llama-3-8B"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA_3_8B))
    small_tokenizer(model)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": f"the supernet {i}"}) + "\n" for i in range(9)))
    text = yaml.safe_dump(recipe()).replace("/models/Llama-3-8B", str(model))
    experiment = yaml.safe_load(text.replace("/data/train.jsonl", str(data)))
    path = tmp_path / "llama3_8b.yaml"
    path.write_text(yaml.safe_dump(experiment))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "llm.llama" in out and "llm.lora_sandwich on 1 Ray Train worker" in out
