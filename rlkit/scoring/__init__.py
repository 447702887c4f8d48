"""Turning completions into rewards: resolving reward specs and running them safely."""
