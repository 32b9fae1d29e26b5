"""nasforge_gnn: graph neural network search spaces (NAS-Bench-Graph's macro space).

The plugin's hooks live in :mod:`nasforge_gnn.plugin`; the benchmark tables and their
canonical hashing in :mod:`nasforge_gnn.nasbench_graph`.
"""
