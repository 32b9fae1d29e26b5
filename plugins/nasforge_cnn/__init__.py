"""First-party CNN plugin: Once-for-All / BigNAS supernets, their tasks, trainers, estimator."""
