"""Runtimes: where each part of an RL step lives (local process or Ray actors)."""
