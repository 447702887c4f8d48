# Two commands do all set-up on a fresh machine:
#   make quickstart   install into .venv, then train the tiny-world quickstart (CPU, minutes)
#   make test         install into .venv, then run the default test suite
.PHONY: setup quickstart test test-extras

setup:
	bash scripts/setup.sh

quickstart: setup
	.venv/bin/rlkit run recipes/quickstart.yaml

test: setup
	.venv/bin/python -m pytest -m "not slow and not vllm and not ray and not deepspeed and not gpu" -q

# CI also runs the marked tests this CPU machine can run (each script sets up what it needs).
test-extras: setup
	bash scripts/ci_extras.sh
