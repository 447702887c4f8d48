"""Algorithms as pure tensor functions: advantage estimators, policy losses, KL and entropy terms, and the
registries that name them (registry.py). Nothing here imports the rest of rlkit: tests/test_import_layers.py."""
