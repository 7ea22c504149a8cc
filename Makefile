# The daily routine of a quantlake repository. Every target is a thin wrapper over
# `quantlake` / `dvc` commands that you can also run by hand (docs/operations.md).
.PHONY: help install test repro flow-data flow-production data-repair data-audit reproduce bench digest plots

help: ## list the targets with what they do (the default)
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## create .venv and install quantlake with its test extras
	python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'

test: ## run the test suite
	pytest -q

# Run every stage whose inputs changed (the embedded sim by default).
repro: ## run every stage whose inputs changed (dvc repro)
	dvc repro

# Daily: move data.as_of to the last closed UTC day, run both cycles, publish the version
# (commit dvc.lock, tag lakehouse/<as_of>, push the data).
flow-data: ## daily: advance data.as_of, reproduce both cycles, publish the version
	quantlake advance --no-repro
	dvc repro
	quantlake publish
	quantlake digest

# Today's portfolio and the backtest on the current lakehouse (no network).
flow-production: ## today's portfolio and the backtest on the current lakehouse (no network)
	dvc repro --single-item snapshot returns select synthesize optimize backtest
	dvc metrics show

# Heal the recorded gaps now (re-fetches exactly the gap windows), then re-certify.
data-repair: ## re-fetch the recorded gaps now, then re-certify
	dvc repro --force --single-item repair
	dvc repro audit report

# Re-run the gate and its report (they read the staging layers, never the network).
data-audit: ## re-run the gate and its report (no network)
	dvc repro --force --single-item audit report

# Reproduce a published backtest in a fresh clone: make reproduce REF=lakehouse/2026-11-20
REF ?=
reproduce: ## reproduce a published backtest in a fresh clone (REF=lakehouse/<as_of>)
	quantlake reproduce $(REF)

bench: ## run every benchmark and print its figures
	for b in benchmarks/bench_*.py; do python "$$b" || exit 1; done

# What changed since the previous version: listings, statuses, quarantine, repairs, trades.
digest: ## what changed since the previous version: listings, statuses, quarantine, repairs, trades
	quantlake digest

# DVC plots as one HTML page that works offline: vega is loaded from node_modules/ (installed
# once with npm, git-ignored) instead of a CDN. Open dvc_plots/index.html through any local web
# server, e.g. `python -m http.server -b 127.0.0.1 8000` and http://127.0.0.1:8000/dvc_plots/.
plots: ## DVC plots as one offline HTML page (vega from node_modules/, installed once with npm)
	test -f node_modules/vega-embed/build/vega-embed.min.js || npm install --no-save --no-audit --no-fund vega@5 vega-lite@5 vega-embed@6
	dvc plots show --html-template .dvc/plots/offline.html
