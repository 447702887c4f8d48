"""`rlkit bench`: the reference GRPO step of DESIGN.md, for rlkit and for TRL, on one device."""
