# The two commands of the README. Each sets up .venv (idempotent) first.
.PHONY: setup run test test-slow bench mutate mutate-changed

setup:
	@bash scripts/setup.sh

# `make run`: the default suite into runs/quick/ (git-ignored; rerunning resumes), with progress, then a compact
# leaderboard per dataset and the regression check against the committed reference results in reports/quick/
# (which it never writes). It fails only when jobs fail; a regression is printed with the verdict
# (`genbench compare reports/quick runs/quick` is the gate with an exit status).
SUITE ?= quick
RUN_OUT ?= runs/$(SUITE)
REFERENCE ?= reports/$(SUITE)

run: setup
	.venv/bin/genbench run $(SUITE) --out $(RUN_OUT) --leaderboard --against $(REFERENCE)

test: setup
	.venv/bin/python -m pytest -q

test-slow: setup
	.venv/bin/python -m pytest -q -m slow

bench: setup
	.venv/bin/python benchmarks/bench_metrics.py

# Mutation testing of the core (scripts/mutate.py): each mutant against the tests of its module that execute the
# mutated lines; not part of `make test`. One module: make mutate MUTATE=genbench/results/store.py ; only the modules
# a change touched: make mutate-changed SINCE=main ; results: reports/benchmarks/mutation_runs/, summary in
# reports/benchmarks/mutation.md. MUTATE_JOBS mutants at once (one core each).
MUTATE ?=
MUTATE_JOBS ?= 2
SINCE ?= HEAD~1
mutate: setup
	nice -n 19 .venv/bin/python scripts/mutate.py --jobs $(MUTATE_JOBS) $(MUTATE)

mutate-changed: setup
	nice -n 19 .venv/bin/python scripts/mutate.py --jobs $(MUTATE_JOBS) --changed-since $(SINCE)
