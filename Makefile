# Two commands do all set-up on a fresh machine:
#   make quickstart   install into .venv, then train the tiny-world quickstart (CPU, minutes)
#   make test         install into .venv, then run the default test suite
.PHONY: setup quickstart test test-extras lint

setup:
	bash scripts/setup.sh

quickstart: setup
	.venv/bin/rlkit run recipes/quickstart.yaml

test: setup
	.venv/bin/python -m pytest -m "not slow and not vllm and not ray and not deepspeed and not gpu" -q

# CI also runs the marked tests this CPU machine can run (each script sets up what it needs).
test-extras: setup
	bash scripts/ci_extras.sh

# ruff with the rules chosen in pyproject.toml; pinned, since a newer ruff adds rules to the same families.
lint: setup
	.venv/bin/python -c "import ruff, importlib.metadata as m; assert m.version('ruff') == '0.17.6'" 2>/dev/null || .venv/bin/python -m pip install -q "ruff==0.17.6"
	.venv/bin/ruff check .
