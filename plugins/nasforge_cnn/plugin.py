"""The ``nasforge_cnn`` plugin: one-shot CNN NAS on elastic MobileNetV3 and ResNet supernets.

Registered names (components that need torch are registered lazily, so that listing
plugins or running a table-backed search never imports it):

- spaces ``cnn.mobilenetv3`` (Once-for-All MobileNetV3: per-stage depth, per-block kernel
  and expand ratio, optional width multiplier and resolution) and ``cnn.resnet``
  (Once-for-All ResNet: per-stage depth, per-block expand ratio, per-stage width), each
  with the supernet that realises it, 2-D (images) or 1-D (sequences);
- tasks ``cnn.digits`` (scikit-learn digits at 32x32), ``cnn.mnist1d`` (MNIST-1D generated
  offline), ``cnn.image_folder`` (a folder of images per class), ``cnn.npz`` (arrays);
- trainers ``cnn.sandwich`` (BigNAS/AttentiveNAS sandwich rule with inplace distillation)
  and ``cnn.progressive`` (Once-for-All progressive shrinking), both on Ray Train;
- estimator ``cnn.accuracy`` (top-1/top-5 by weight sharing, batch norm re-calibrated).
"""

from __future__ import annotations

from nasforge import RegisterEstimator, RegisterSpace, RegisterTask, RegisterTrainer, hookimpl, lazy

from .spaces import MobileNetV3Space, ResNetSpace

#: registered only when ``nasforge[cnn]`` is installed (its datasets: pillow, mnist1d)
requires_extra = "cnn"


@hookimpl
def register_spaces(register: RegisterSpace) -> None:
    register(
        "cnn.mobilenetv3",
        MobileNetV3Space,
        supernet=lazy("nasforge_cnn.mobilenetv3:MobileNetV3Supernet"),
    )
    register("cnn.resnet", ResNetSpace, supernet=lazy("nasforge_cnn.resnet:ResNetSupernet"))


@hookimpl
def register_tasks(register: RegisterTask) -> None:
    register("cnn.digits", lazy("nasforge_cnn.data:DigitsTask", "scikit-learn digits at 32x32"))
    register("cnn.mnist1d", lazy("nasforge_cnn.data:MNIST1DTask", "MNIST-1D, generated offline"))
    register(
        "cnn.image_folder",
        lazy("nasforge_cnn.data:ImageFolderTask", "a folder of images per class"),
    )
    register("cnn.npz", lazy("nasforge_cnn.data:NpzTask", "x/y arrays from .npz files"))


@hookimpl
def register_trainers(register: RegisterTrainer) -> None:
    register(
        "cnn.sandwich",
        lazy("nasforge_cnn.sandwich:SandwichTrainer", "sandwich rule + inplace distillation"),
    )
    register(
        "cnn.progressive",
        lazy("nasforge_cnn.progressive:ProgressiveTrainer", "Once-for-All progressive shrinking"),
    )


@hookimpl
def register_estimators(register: RegisterEstimator) -> None:
    register(
        "cnn.accuracy",
        lazy("nasforge_cnn.accuracy:AccuracyEstimator", "top-1/top-5 by weight sharing"),
    )
