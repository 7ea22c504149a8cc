# The daily routine of a quantlake repository. Every target is a thin wrapper over
# `quantlake` / `dvc` commands that you can also run by hand.
.PHONY: install test repro flow-data data-audit bench clean-venv

install:
	python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'

test:
	pytest -q

# Run every stage whose inputs changed (the embedded sim by default).
repro:
	dvc repro

# Move data.as_of to the last closed UTC day and reproduce the Data Cycle.
flow-data:
	quantlake advance

# Re-run the gate only (it reads the staging layers, never the network).
data-audit:
	dvc repro audit

bench:
	python benchmarks/bench_optimizers.py
