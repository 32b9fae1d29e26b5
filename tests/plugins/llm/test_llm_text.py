"""``llm.text`` (blocks of tokens, cached on disk) and ``llm.perplexity`` (token-weighted
held-out perplexity by weight sharing), on a small byte-level model."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("transformers", reason="nasforge[llm] is not installed")

import torch
from nasforge_llm.perplexity import PerplexityEstimator
from nasforge_llm.space import LlamaSpace
from nasforge_llm.supernet import LlamaSupernet
from nasforge_llm.text import TextTask
from tiny_llm import TINY_LLAMA, write_documents

from nasforge import EvalContext
from nasforge.testing import check_estimator

CONFIG = TINY_LLAMA


@pytest.fixture
def corpus(tmp_path):
    return write_documents(tmp_path, 12, "Document number {i} says something about nasforge. " * 20)


def test_blocks_come_from_disjoint_documents_and_are_cached_on_disk(corpus, tmp_path, monkeypatch):
    task = TextTask(files=corpus, block_size=32, fractions=(0.5, 0.25, 0.25), heldout_blocks=None)
    task.use_cache_dir(tmp_path / "data")
    assert task.input_shape == (32,) and task.num_classes == 257
    train, same = task.arrays("train")
    assert train is same and train.dtype == torch.int64 and train.shape[1] == 32
    heldout, _ = task.arrays("val")
    calibration, _ = task.arrays("calib")
    assert len(heldout) and len(calibration)
    assert len(list((tmp_path / "data").glob("text-*.pt"))) == 3

    again = TextTask(files=corpus, block_size=32, fractions=(0.5, 0.25, 0.25), heldout_blocks=None)
    again.use_cache_dir(tmp_path / "data")
    monkeypatch.setattr(TextTask, "_build", lambda self, split: pytest.fail("rebuilt"))
    assert torch.equal(again.arrays("val")[0], heldout)  # read back, not built again
    with pytest.raises(ValueError, match="unknown split"):
        again.arrays("test")


def test_the_space_refuses_a_tokenizer_larger_than_the_vocabulary(corpus):
    space = LlamaSpace(config={**CONFIG, "vocab_size": 200}, min_depth=2)
    with pytest.raises(ValueError, match="257 token ids but the model's vocabulary has 200"):
        space.check_task(TextTask(files=corpus))


def test_perplexity_is_token_weighted_and_matches_the_models_own_loss(corpus, tmp_path):
    space = LlamaSpace(config=CONFIG, min_depth=2, lora_ranks=[0, 4], seq_len=16)
    supernet = LlamaSupernet(space).eval()
    task = TextTask(files=corpus, block_size=16, fractions=(0.5, 0.25, 0.25), heldout_blocks=6)
    estimator = PerplexityEstimator(space, batch_size=4)
    context = EvalContext(run_dir=tmp_path, supernet=supernet, task=task)
    check_estimator(estimator, space, context=context, n=3)
    arch = space.sample(1)
    got = estimator.evaluate(arch, context)
    blocks, _ = task.arrays("val")
    supernet.set_active(arch)
    with torch.no_grad():
        loss = supernet.model(input_ids=blocks, labels=blocks).loss.item()  # equal-length blocks
    assert got["nll"] == pytest.approx(loss, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert 100 < got["perplexity"] < 1000  # an untrained model: about the vocabulary's size


def test_an_edited_file_is_tokenised_again(corpus, tmp_path):
    options = {"files": corpus, "block_size": 32, "fractions": (0.5, 0.25, 0.25)}
    task = TextTask(**options)
    before = task.fingerprint("train")
    with open(corpus[0], "a") as f:
        f.write(" One more sentence.")
    assert TextTask(**options).fingerprint("train") != before
