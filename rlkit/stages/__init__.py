"""Stages of a recipe: sft, rl (and dpo, rollout_dpo). Each turns an input model into an output model."""
