"""nasforge_template: a template third-party nasforge plugin.

An MLP classifier search space (:mod:`.space`), an estimator that trains each arch on
scikit-learn's digits and reports its validation accuracy (:mod:`.estimator`), and a cost
model that counts its parameters (:mod:`.hardware`). The hooks that register them with
nasforge live in :mod:`.plugin`, the module the ``nasforge`` entry point names.
"""

__version__ = "0.1.0"
