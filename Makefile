# The two commands of the README. Each sets up .venv (idempotent) first.
.PHONY: setup run test test-slow bench mutate

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

# Mutation testing of the core (scripts/mutate.py): each module against its own test files; not part of `make test`.
# One module: make mutate MUTATE=genbench/store.py ; results: reports/benchmarks/mutation_runs/, summary in
# reports/benchmarks/mutation.md. MUTATE_JOBS mutants at once (one core each).
MUTATE ?=
MUTATE_JOBS ?= 2
mutate: setup
	nice -n 19 .venv/bin/python scripts/mutate.py --jobs $(MUTATE_JOBS) $(MUTATE)
