# The daily routine of a quantlake repository. Every target is a thin wrapper over
# `quantlake` / `dvc` commands that you can also run by hand.
.PHONY: install test repro flow-data data-repair data-audit bench

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

# Heal the recorded gaps (re-fetches exactly the gap windows), then re-certify.
data-repair:
	dvc repro repair

# Re-run the gate and its report (they read the staging layers, never the network).
data-audit:
	dvc repro report

bench:
	python benchmarks/bench_optimizers.py
