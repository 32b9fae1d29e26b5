"""First-party hardware cost models usable by every plugin: MACs, parameters, measured
latency, peak memory and latency look-up tables."""
