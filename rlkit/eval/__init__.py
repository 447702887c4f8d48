"""Evaluation on math benchmarks: name resolution and sampling defaults (benchmarks), generation and
scoring (evaluate), avg@k / pass@k / maj@k (metrics), results files and tables (report)."""
