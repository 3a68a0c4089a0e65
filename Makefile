# The two commands of the README. Each sets up .venv (idempotent) first.
.PHONY: setup run test test-slow bench

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/genbench run

test: setup
	.venv/bin/python -m pytest -q

test-slow: setup
	.venv/bin/python -m pytest -q -m slow

bench: setup
	.venv/bin/python benchmarks/bench_metrics.py
