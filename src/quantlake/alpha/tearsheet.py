"""A one-page PNG tear sheet of a backtest: equity, drawdown, weights over time.

Rendered with matplotlib's Agg backend at a fixed size and dpi with no timestamp metadata, so
the same backtest gives the same bytes.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

TOP_N = 12


def render_tearsheet(equity: pd.DataFrame, weights: pd.DataFrame, metrics: dict, title: str) -> bytes:
    """PNG bytes. `equity`: date x curves; `weights`: long (date, symbol, weight)."""
    fig, (ax_eq, ax_dd, ax_w) = plt.subplots(3, 1, figsize=(11, 11), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 2]})
    for col in equity.columns:
        m = metrics.get(col, {})
        label = f"{col}  CAGR {_pct(m.get('cagr'))}  Sharpe {_num(m.get('sharpe'))}  MaxDD {_pct(m.get('max_drawdown'))}"
        ax_eq.plot(equity.index, equity[col], lw=1.3, label=label)
    ax_eq.set_yscale("log")
    ax_eq.set_ylabel("equity (log)")
    ax_eq.legend(loc="upper left", fontsize=8)
    ax_eq.grid(alpha=0.3)
    ax_eq.set_title(title, fontsize=10)

    drawdown = equity / equity.cummax() - 1
    for col in drawdown.columns:
        ax_dd.plot(drawdown.index, drawdown[col], lw=1.0, label=col)
    ax_dd.set_ylabel("drawdown")
    ax_dd.grid(alpha=0.3)

    if len(weights):
        wide = weights.pivot_table(index="date", columns="symbol", values="weight", aggfunc="sum").fillna(0.0).sort_index()
        top = wide.abs().mean().sort_values(ascending=False).index[:TOP_N]
        shown = wide[sorted(top)]
        other = wide.drop(columns=top).sum(axis=1)
        if (other.abs() > 0).any():
            shown = shown.assign(other=other)
        ax_w.stackplot(shown.index, shown.T.to_numpy(), labels=list(shown.columns), step="post", alpha=0.85)
        ax_w.legend(loc="upper left", fontsize=7, ncol=4)
    ax_w.set_ylabel("weights at rebalance")
    ax_w.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
