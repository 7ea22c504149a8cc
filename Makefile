# The daily routine of a quantlake repository. Every target is a thin wrapper over
# `quantlake` / `dvc` commands that you can also run by hand (docs/operations.md).
.PHONY: install test repro flow-data flow-production data-repair data-audit reproduce bench digest plots

install:
	python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'

test:
	pytest -q

# Run every stage whose inputs changed (the embedded sim by default).
repro:
	dvc repro

# Daily: move data.as_of to the last closed UTC day, run both cycles, publish the version
# (commit dvc.lock, tag lakehouse/<as_of>, push the data).
flow-data:
	quantlake advance --no-repro
	dvc repro
	quantlake publish
	quantlake digest

# Today's portfolio and the backtest on the current lakehouse (no network).
flow-production:
	dvc repro --single-item snapshot returns select synthesize optimize backtest
	dvc metrics show

# Heal the recorded gaps now (re-fetches exactly the gap windows), then re-certify.
data-repair:
	dvc repro --force --single-item repair
	dvc repro audit report

# Re-run the gate and its report (they read the staging layers, never the network).
data-audit:
	dvc repro --force --single-item audit report

# Reproduce a published backtest in a fresh clone: make reproduce REF=lakehouse/2026-11-20
REF ?=
reproduce:
	quantlake reproduce $(REF)

bench:
	for b in benchmarks/bench_*.py; do python "$$b" || exit 1; done

# What changed since the previous version: listings, statuses, quarantine, repairs, trades.
digest:
	quantlake digest

# DVC plots as one HTML page that works offline: vega is loaded from node_modules/ (installed
# once with npm, git-ignored) instead of a CDN. Open dvc_plots/index.html through any local web
# server, e.g. `python -m http.server -b 127.0.0.1 8000` and http://127.0.0.1:8000/dvc_plots/.
plots:
	test -f node_modules/vega-embed/build/vega-embed.min.js || npm install --no-save --no-audit --no-fund vega@5 vega-lite@5 vega-embed@6
	dvc plots show --html-template .dvc/plots/offline.html
