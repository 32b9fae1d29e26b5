"""The ``nasforge_tdnn`` plugin: speaker verification with EfficientTDNN supernets.

Registered names (components that need torch are registered lazily, so that listing
plugins or running a table-backed search never imports it):

- space ``tdnn.ecapa`` (EfficientTDNN: depth, kernels, width) with its supernet;
- tasks ``tdnn.synthetic`` (speakers synthesised offline with espeak-ng, the default) and
  ``tdnn.voxceleb`` (a VoxCeleb-layout tree and trial list of the user's own);
- trainer ``tdnn.progressive`` (kernel, depth, width phases, AAM-softmax, on Ray Train);
- estimator ``tdnn.eer`` (EER and minDCF on the trial list, batch norm re-estimated).
"""

from __future__ import annotations

from nasforge import (
    RegisterEstimator,
    RegisterSpace,
    RegisterTask,
    RegisterTrainer,
    hookimpl,
    lazy,
)

from .space import TDNNSpace

#: registered only when ``nasforge[speech]`` is installed (librosa, soundfile, espeak-ng…)
requires_extra = "speech"


@hookimpl
def register_spaces(register: RegisterSpace) -> None:
    register("tdnn.ecapa", TDNNSpace, supernet=lazy("nasforge_tdnn.supernet:TDNNSupernet"))


@hookimpl
def register_tasks(register: RegisterTask) -> None:
    register(
        "tdnn.synthetic",
        lazy("nasforge_tdnn.data:SyntheticSpeakersTask", "speakers synthesised offline"),
    )
    register("tdnn.voxceleb", lazy("nasforge_tdnn.data:VoxCelebTask", "a VoxCeleb-layout tree"))


@hookimpl
def register_trainers(register: RegisterTrainer) -> None:
    register(
        "tdnn.progressive",
        lazy("nasforge_tdnn.progressive:ProgressiveTrainer", "EfficientTDNN progressive"),
    )


@hookimpl
def register_estimators(register: RegisterEstimator) -> None:
    register("tdnn.eer", lazy("nasforge_tdnn.eer:EEREstimator", "EER and minDCF on trials"))
