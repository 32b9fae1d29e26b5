"""nasforge_search: the built-in search strategies and predictors, a plugin like any other.

The hooks live in :mod:`nasforge_search.plugin`. The strategies that are one Optuna
sampler each are in :mod:`nasforge_search.optuna_samplers`; DyNAS-T's LINAS in
:mod:`nasforge_search.linas`; expected hypervolume improvement in
:mod:`nasforge_search.ehvi`; the predictors they learn with, and cross-validated selection
among them, in :mod:`nasforge_search.predictors`.
"""
