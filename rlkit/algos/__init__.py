"""Algorithms as pure tensor functions: advantage estimators, policy losses, KL and entropy terms."""
