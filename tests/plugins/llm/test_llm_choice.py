"""``llm.multiple_choice``: log-likelihood scoring of choices after a context, as the
lm-evaluation-harness does, on a small generated task."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers", reason="nasforge[llm] is not installed")

import torch
from nasforge_llm.choice import (
    MultipleChoiceEstimator,
    Question,
    choice_log_likelihoods,
    read_questions,
)
from nasforge_llm.corpus import ByteTokenizer
from nasforge_llm.space import LlamaSpace
from nasforge_llm.supernet import LlamaSupernet
from nasforge_llm.text import TextTask
from tiny_llm import TINY_LLAMA

from nasforge import EvalContext
from nasforge.testing import check_estimator


def favouring(token: int):
    """A 'model' whose next-token distribution always favours ``token``."""

    def model(batch: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*batch.shape, 257)
        logits[..., token] = 5.0
        return logits

    return model


def test_the_likeliest_continuation_wins_and_length_normalisation_is_per_character():
    tokenizer = ByteTokenizer()
    question = Question("Say a:", ("aaaa", "bb", "a"), answer=0)
    scores = choice_log_likelihoods(favouring(ord("a")), tokenizer, question, "cpu")
    assert scores[2] > scores[0] > scores[1]  # raw sums favour the short 'a' ...
    per_char = [s / len(c) for s, c in zip(scores, question.choices, strict=True)]
    assert per_char[0] == pytest.approx(per_char[2])  # ... per character 'aaaa' ties with it


def test_scores_equal_the_models_own_log_likelihood_despite_padding():
    space = LlamaSpace(config=TINY_LLAMA, min_depth=2, lora_ranks=[0])
    supernet = LlamaSupernet(space).eval()
    tokenizer = ByteTokenizer()
    question = Question("The sky is", (" blue", " a very green colour"), answer=0)
    scores = choice_log_likelihoods(supernet, tokenizer, question, "cpu")
    context = tokenizer.encode(question.context)
    for choice, score in zip(question.choices, scores, strict=True):
        ids = torch.tensor([context + tokenizer.encode(choice)])
        with torch.no_grad():
            log_probs = torch.log_softmax(supernet(ids)[0, :-1], -1)
        targets = ids[0, len(context) :]
        expected = log_probs[len(context) - 1 :].gather(1, targets[:, None]).sum().item()
        assert score == pytest.approx(expected, abs=1e-4)


def test_the_estimator_scores_a_jsonl_task_and_names_bad_lines(tmp_path):
    rows = [{"context": f"Question {i}:", "choices": [" yes", " no", " maybe"], "answer": i % 3}
            for i in range(6)]  # fmt: skip
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert len(read_questions(path)) == 6
    space = LlamaSpace(config=TINY_LLAMA, min_depth=2, lora_ranks=[0, 4])
    corpus = tmp_path / "a.txt"
    corpus.write_text("text " * 400)
    task = TextTask(files=[str(corpus)], fractions=(1.0, 0.0, 0.0))
    context = EvalContext(run_dir=tmp_path, supernet=LlamaSupernet(space).eval(), task=task)
    check_estimator(MultipleChoiceEstimator(space, file=str(path)), space, context=context, n=2)
    (tmp_path / "bad.jsonl").write_text('{"context": "x", "choices": ["a"], "answer": 0}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: needs 2\+ choices"):
        read_questions(tmp_path / "bad.jsonl")
