"""``llm.multiple_choice``: accuracy on a local multiple-choice task by log-likelihood, the
lm-evaluation-harness method (HellaSwag, ARC, PIQA are scored this way).

Each question is a JSON line ``{"context": "...", "choices": ["...", ...], "answer": i}``.
A choice's score is the sum of the log-probabilities of its tokens following the context's
(the sub-network with the arch active, by weight sharing); ``acc`` counts the questions whose
highest-scoring choice is the answer, ``acc_norm`` the same with scores divided by the
choice's length in characters (which removes the bias towards short answers). Tokens come
from the experiment task's tokenizer (the model's own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from nasforge import Arch, Estimator, EvalContext, Metric

from .space import LlamaSpace


@dataclass(frozen=True)
class Question:
    """One multiple-choice question."""

    context: str
    choices: tuple[str, ...]
    answer: int


def read_questions(path: str | Path) -> list[Question]:
    """The questions of a JSONL file; a bad line raises ``ValueError`` naming it."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    questions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            choices = tuple(str(c) for c in row["choices"])
            question = Question(str(row["context"]), choices, int(row["answer"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValueError(
                f'{path}:{number}: expected {{"context": str, "choices": [str, ...], '
                '"answer": int}'
            ) from None
        if len(choices) < 2 or not 0 <= question.answer < len(choices):
            raise ValueError(f"{path}:{number}: needs 2+ choices and an answer index among them")
        questions.append(question)
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


@torch.no_grad()
def choice_log_likelihoods(
    model: Any, tokenizer: Any, question: Question, device: str
) -> list[float]:
    """Sum of log-probabilities of each choice's tokens after the context's."""
    context = tokenizer.encode(question.context, add_special_tokens=False)
    sequences = [context + tokenizer.encode(c, add_special_tokens=False) for c in question.choices]
    width = max(len(s) for s in sequences)
    batch = torch.zeros(len(sequences), width, dtype=torch.int64)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = torch.tensor(sequence)
    logits = model(batch.to(device)).float()
    log_probs = F.log_softmax(logits[:, :-1], dim=-1)
    scores = []
    for row, sequence in enumerate(sequences):
        start, end = len(context), len(sequence)
        targets = torch.tensor(sequence[start:end], device=log_probs.device)
        scores.append(float(log_probs[row, start - 1 : end - 1].gather(1, targets[:, None]).sum()))
    return scores


class MultipleChoiceOptions(BaseModel):
    """Options of ``llm.multiple_choice``."""

    model_config = ConfigDict(extra="forbid")
    file: str = Field(description="JSONL questions: context, choices, answer")
    max_questions: int | None = Field(None, ge=1, description="score the first N")


class MultipleChoiceEstimator(Estimator):
    """Multiple-choice accuracy by log-likelihood (``acc``, ``acc_norm``, in %)."""

    Options = MultipleChoiceOptions
    requires_supernet = True
    requires_task = True
    space_types = (LlamaSpace,)

    def __init__(self, space: LlamaSpace, **options: Any):
        super().__init__(space, **options)
        self.config = MultipleChoiceOptions(**options)
        self.metrics = {
            "acc": Metric("acc", "%", "maximize", "multiple-choice accuracy"),
            "acc_norm": Metric("acc_norm", "%", "maximize", "accuracy, length-normalised"),
        }

    def setup(self, context: EvalContext) -> None:
        questions = read_questions(self.config.file)
        context.cache["questions"] = questions[: self.config.max_questions]

    def evaluate(self, arch: Arch, context: EvalContext) -> dict[str, float]:
        context.supernet.set_active(arch)
        context.supernet.eval()
        return self.evaluate_subnet(context.supernet, arch, context)

    def evaluate_subnet(self, subnet: Any, arch: Arch, context: EvalContext) -> dict[str, float]:
        tokenizer = context.task.tokenizer
        right = right_norm = 0
        questions = context.cache["questions"]
        for question in questions:
            scores = choice_log_likelihoods(subnet, tokenizer, question, context.device)
            normalised = [s / max(1, len(c)) for s, c in zip(scores, question.choices, strict=True)]
            right += max(range(len(scores)), key=scores.__getitem__) == question.answer
            right_norm += max(range(len(scores)), key=normalised.__getitem__) == question.answer
        return {"acc": 100 * right / len(questions), "acc_norm": 100 * right_norm / len(questions)}
