"""SwS weakness-driven problem synthesis, installed as `rlkit.synth`."""
