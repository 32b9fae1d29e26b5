"""Fidelity checks: how far a trained supernet's weight-sharing quality can be trusted.

:func:`run_fidelity` (``nasforge fidelity RUN_DIR``) trains chosen archs alone as Ray Tune
trials and compares: :mod:`.selection` picks the archs, :mod:`.ranking` measures the
agreement, :mod:`.check` runs it and writes the report.
"""

from .check import FidelityReport, describe_agreement, run_fidelity

__all__ = ["FidelityReport", "describe_agreement", "run_fidelity"]
