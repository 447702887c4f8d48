"""Code rewards: run model-written programs against unit tests in a sandbox (`unit_tests`) and judge
their security and maintainability with program analysis (`code_quality`, after REAL, arXiv 2505.22704)."""
