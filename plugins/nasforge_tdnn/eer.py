"""``tdnn.eer``: equal error rate and minDCF of a subnet by weight sharing.

Before each subnet is scored its batch-norm statistics are re-estimated on fixed crops of
training utterances (EfficientTDNN re-estimates on 6,000 samples; ``calibration_size``
here). Every evaluation utterance is embedded whole (one forward per utterance length
group), the trials are scored by the cosine of their enrolment and test embeddings, and
EER (%) and minDCF (p_target 0.01) are computed from those scores.

Its baselines (:mod:`.baselines`: mean-MFCC cosine scoring and the pretrained GE2E encoder)
are scored on the same trials and shown beside the front in the run's report.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from nasforge import Baseline, Estimator, EvalContext, Metric
from nasforge.nn import bn_recalibrate

from .scoring import cosine_scores, verification_metrics


class EEROptions(BaseModel):
    """Options of ``tdnn.eer``."""

    model_config = ConfigDict(extra="forbid")

    calibration_size: int = Field(
        512, ge=1, description="training crops that re-estimate batch norm per subnet"
    )
    calibration_batch_size: int = Field(128, ge=1)
    batch_size: int = Field(64, ge=1, description="evaluation utterances per forward")
    p_target: float = Field(0.01, gt=0, lt=1, description="prior of a target trial in minDCF")


def embed_utterances(
    model: Any, utterances: list[torch.Tensor], device: str, batch_size: int
) -> torch.Tensor:
    """Embeddings of whole utterances (``[80, T]`` each), batched by equal length so
    nothing is padded or cropped; rows in the order given."""
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].shape[-1])
    out: list[torch.Tensor | None] = [None] * len(utterances)
    start = 0
    with torch.no_grad():
        while start < len(order):
            length = utterances[order[start]].shape[-1]
            stop = start
            while (
                stop < len(order)
                and stop - start < batch_size
                and utterances[order[stop]].shape[-1] == length
            ):
                stop += 1
            batch = torch.stack([utterances[i] for i in order[start:stop]]).to(device)
            for i, row in zip(order[start:stop], model(batch).float().cpu(), strict=True):
                out[i] = row
            start = stop
    return torch.stack(out)


class EEREstimator(Estimator):
    """EER [%] and minDCF of a subnet on the task's trial list, batch norm re-estimated per
    subnet (see the module docstring); implements :class:`nasforge.Baselines`."""

    Options = EEROptions
    requires_supernet = True
    requires_task = True

    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.config = EEROptions(**options)
        self.metrics = {
            "eer": Metric("eer", "%", "minimize", "equal error rate on the trial list"),
            "min_dcf": Metric(
                "min_dcf",
                "",
                "minimize",
                f"minimum detection cost, p_target {self.config.p_target}",
            ),
        }

    def setup(self, context: EvalContext) -> None:
        task = context.task
        calib, _ = task.arrays("calib")
        context.cache["calib"] = calib[: self.config.calibration_size].to(context.device)
        context.cache["utterances"] = task.eval_utterances()
        context.cache["trials"] = task.trials()

    def prepare(self, arch, context: EvalContext) -> None:
        calib = context.cache["calib"]
        size = self.config.calibration_batch_size
        bn_recalibrate(context.supernet, [calib[i : i + size] for i in range(0, len(calib), size)])
        context.supernet.eval()

    def evaluate(self, arch, context: EvalContext) -> dict[str, float]:
        return self.evaluate_subnet(context.supernet, arch, context)

    def evaluate_subnet(self, subnet, arch, context: EvalContext) -> dict[str, float]:
        embeddings = embed_utterances(
            subnet, context.cache["utterances"], context.device, self.config.batch_size
        )
        labels, enroll, test = context.cache["trials"]
        scores = cosine_scores(embeddings, enroll, test)
        return verification_metrics(scores, labels, p_target=self.config.p_target)

    def baselines(self, context: EvalContext) -> list[Baseline]:
        """Mean-MFCC cosine scoring and the pretrained GE2E encoder on the task's trials:
        EER, minDCF, M MACs and M parameters (per second of audio, as ``hw.macs`` counts
        a subnet)."""
        from .baselines import baseline_results

        task = context.task
        labels, enroll, test = task.trials()
        return [
            Baseline(
                row["name"],
                {
                    "eer": row["eer"],
                    "min_dcf": row["min_dcf"],
                    "macs_m": row["macs_per_s"] / 1e6,
                    "params_m": row["params"] / 1e6,
                },
                row["note"],
            )
            for row in baseline_results(
                task.eval_waves(), labels, enroll, test, p_target=self.config.p_target
            )
        ]
