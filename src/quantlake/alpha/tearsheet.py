"""The one-page PNG tear sheet of a backtest (the figures come from tearsheet_figures.py).

Panels, top to bottom: the metrics table and the five worst drawdowns; equity (log); drawdown
with the five worst periods shaded; rolling 90-day Sharpe and volatility; monthly returns heat
map and yearly returns; traded weight and costs per month; the weights held, top holdings by
name in distinct colours and the rest as "other".

Rendered with matplotlib's Agg backend at a fixed size and dpi, with fixed rc settings and no
metadata (no software version, no date), so the same backtest gives the same bytes.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402

from .tearsheet_figures import DRAWDOWN_HEADER, OTHER, TearsheetFigures, drawdown_rows, format_value, table_rows  # noqa: E402

CURVE_COLOURS = {"strategy": "#1f77b4", "equal_weight": "#ff7f0e", "benchmark": "#7f7f7f"}
OTHER_COLOUR = "#c7c7c7"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "quantlake",
}


def holding_colours(names: list[str]) -> list[str]:
    """Distinct colours for up to 20 holdings (tab10, then tab20's light shades); grey for "other"."""
    tab10 = list(plt.get_cmap("tab10").colors)
    light = list(plt.get_cmap("tab20").colors)[1::2]
    palette = [c for c in tab10 if c != tab10[7]] + [c for i, c in enumerate(light) if i != 7]  # no greys
    out, k = [], 0
    for name in names:
        if name == OTHER:
            out.append(OTHER_COLOUR)
        else:
            out.append(matplotlib.colors.to_hex(palette[k % len(palette)]))
            k += 1
    return out


def render_tearsheet(figures: TearsheetFigures, title: str) -> bytes:
    """PNG bytes of the whole tear sheet."""
    with plt.rc_context(_RC):
        fig = plt.figure(figsize=(12, 23), dpi=100)
        grid = GridSpec(7, 2, figure=fig, height_ratios=[4.2, 3, 1.7, 1.8, 2.4, 1.6, 2.8], width_ratios=[1.6, 1], hspace=0.42, wspace=0.18)
        fig.suptitle(title, fontsize=11, fontweight="bold", y=0.995)
        _metrics_table(fig.add_subplot(grid[0, 0]), figures)
        _drawdown_table(fig.add_subplot(grid[0, 1]), figures)
        _equity(fig.add_subplot(grid[1, :]), figures)
        _drawdown(fig.add_subplot(grid[2, :]), figures)
        _rolling(fig.add_subplot(grid[3, 0]), figures.rolling_sharpe, "Rolling 90-day Sharpe", "{:.1f}")
        _rolling(fig.add_subplot(grid[3, 1]), figures.rolling_volatility, "Rolling 90-day volatility", "{:.0%}")
        _monthly(fig.add_subplot(grid[4, 0]), figures.monthly)
        _yearly(fig.add_subplot(grid[4, 1]), figures.yearly)
        _trading(fig.add_subplot(grid[5, :]), figures.trading)
        _holdings(fig.add_subplot(grid[6, :]), figures.holdings, figures.equity.index[-1] if len(figures.equity) else None)
        if len(figures.equity):
            for ax in fig.axes:
                if ax.get_label() == "timeline":
                    ax.set_xlim(figures.equity.index[0], figures.equity.index[-1])
                    locator = mdates.AutoDateLocator(minticks=5 if ax.get_position().width > 0.5 else 3, maxticks=14 if ax.get_position().width > 0.5 else 7)
                    ax.xaxis.set_major_locator(locator)
                    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        fig.subplots_adjust(left=0.06, right=0.86, top=0.975, bottom=0.025)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
    return buf.getvalue()


def _metrics_table(ax, figures: TearsheetFigures) -> None:
    curves = list(figures.equity.columns)
    _table(ax, "Performance (net of costs)", ["", *curves], table_rows(figures.metrics, curves),
           [0.34] + [0.22] * len(curves), 1.12, first_left=True)


def _drawdown_table(ax, figures: TearsheetFigures) -> None:
    rows = drawdown_rows(figures.worst_drawdowns) or [["none", "", "", "", ""]]
    _table(ax, "Worst drawdowns (strategy)", list(DRAWDOWN_HEADER), rows, [0.15, 0.24, 0.24, 0.24, 0.12], 1.3)


def _table(ax, title: str, header: list, rows: list, widths: list, row_scale: float, first_left: bool = False) -> None:
    ax.axis("off")
    ax.set_title(title, loc="left")
    table = ax.table(cellText=rows, colLabels=header, loc="upper left", cellLoc="right", colLoc="right", colWidths=widths)
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, row_scale)
    for (row, col), cell in table.get_celld().items():
        cell.set_edgecolor("#dddddd")
        if first_left and col == 0:
            cell.set_text_props(ha="left")
            cell._loc = "left"
        if row == 0:
            cell.set_text_props(fontweight="bold")


def _equity(ax, figures: TearsheetFigures) -> None:
    ax.set_label("timeline")
    for col in figures.equity.columns:
        m = figures.metrics.get(col, {})
        label = f"{col}  CAGR {format_value(m.get('cagr'), 'pct')}  Sharpe {format_value(m.get('sharpe'), 'num')}"
        ax.plot(figures.equity.index, figures.equity[col], lw=1.3, label=label, color=CURVE_COLOURS.get(col))
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_title("Equity (log scale, starts at 1.0)", loc="left")
    ax.legend(loc="upper left", fontsize=8)


def _drawdown(ax, figures: TearsheetFigures) -> None:
    ax.set_label("timeline")
    for col in figures.drawdown.columns:
        ax.plot(figures.drawdown.index, figures.drawdown[col], lw=0.9, label=col, color=CURVE_COLOURS.get(col))
    first = figures.drawdown.columns[0]
    ax.fill_between(figures.drawdown.index, figures.drawdown[first], 0, color=CURVE_COLOURS.get(first), alpha=0.15)
    last = figures.drawdown.index[-1] if len(figures.drawdown) else None
    for k, p in enumerate(figures.worst_drawdowns):
        start, end = pd.Timestamp(p["start"]), pd.Timestamp(p["recovered"]) if p["recovered"] else last
        ax.axvspan(start, end, color="#d62728", alpha=0.08)
        ax.annotate(f"{k + 1}", (pd.Timestamp(p["trough"]), p["depth"]), fontsize=7, color="#d62728", ha="center", va="top")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.set_title("Drawdown (worst five periods of the strategy shaded)", loc="left")
    ax.legend(loc="lower left", fontsize=7, ncol=3)


def _rolling(ax, frame: pd.DataFrame, title: str, fmt: str) -> None:
    ax.set_label("timeline")
    for col in frame.columns:
        ax.plot(frame.index, frame[col], lw=0.9, label=col, color=CURVE_COLOURS.get(col))
    ax.axhline(0, color="black", lw=0.5)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: fmt.format(v)))
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", fontsize=7, ncol=3)


def _monthly(ax, monthly: pd.DataFrame) -> None:
    ax.grid(False)
    values = monthly.to_numpy("float64")
    finite = values[np.isfinite(values)]
    bound = float(np.max(np.abs(finite))) if finite.size else 0.1
    bound = bound if bound > 0 else 0.1
    ax.imshow(np.ma.masked_invalid(values), cmap="RdYlGn", norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7, color="white" if abs(v) > 0.7 * bound else "black")
    ax.set_xticks(range(12), MONTHS)
    ax.set_yticks(range(len(monthly.index)), [str(y) for y in monthly.index])
    ax.set_title("Monthly returns (strategy)", loc="left")


def _yearly(ax, yearly: pd.DataFrame) -> None:
    n = max(len(yearly.columns), 1)
    x = np.arange(len(yearly.index))
    width = 0.8 / n
    for k, col in enumerate(yearly.columns):
        ax.bar(x + (k - (n - 1) / 2) * width, yearly[col].to_numpy(), width, label=col, color=CURVE_COLOURS.get(col))
    ax.set_xticks(x, [str(p) for p in yearly.index])
    ax.axhline(0, color="black", lw=0.5)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.set_title("Yearly returns", loc="left")
    ax.legend(loc="upper left", fontsize=7)


def _trading(ax, trading: pd.DataFrame) -> None:
    ax.set_label("timeline")
    if len(trading):
        ax.bar(trading.index, trading["turnover"].to_numpy(), width=20, color="#9467bd", alpha=0.7, label="traded weight per month")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        costs = ax.twinx()
        costs.grid(False)
        costs.plot(trading.index, trading["cost"].cumsum().to_numpy(), color="#d62728", lw=1.3, label="costs paid, cumulative")
        costs.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=1))
        lines = ax.get_legend_handles_labels()
        more = costs.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=7)
    ax.set_title("Turnover and costs (strategy; fractions of equity)", loc="left")


def _holdings(ax, holdings: pd.DataFrame, last_day) -> None:
    ax.set_title("Weights held from each rebalance (strategy; top holdings by average weight, the rest as other)", loc="left")
    if holdings.empty:
        ax.text(0.5, 0.5, "no holdings", ha="center", transform=ax.transAxes)
        return
    ax.set_label("timeline")
    names = list(holdings.columns)
    if last_day is not None and last_day > holdings.index[-1]:  # the last portfolio is held to the end
        holdings = pd.concat([holdings, holdings.iloc[[-1]].set_axis(pd.DatetimeIndex([last_day]))])
    ax.stackplot(holdings.index, holdings.T.to_numpy(), labels=names, colors=holding_colours(names), step="post", alpha=0.9)
    ax.set_ylim(0, max(1.0, float(holdings.sum(axis=1).max())))
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False, title="holding")
