"""bench.png: latency percentiles per endpoint and database, and req/s as a ratio to the
baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from load import CONNECTIONS
from report import RATIO_TARGETS, Run

PERCENTILES = (
    ("p50", "p50_ms", "#9ecae1"),
    ("p90", "p90_ms", "#4292c6"),
    ("p99", "p99_ms", "#08306b"),
)
DB_COLORS = {"SQLite": "#41ab5d", "Postgres": "#6a51a3"}


def plot(run: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dbs = list(run.databases)
    fig = plt.figure(figsize=(6.5 * max(len(dbs), 1) + 1, 10), layout="constrained")
    grid = fig.add_gridspec(2, max(len(dbs), 1), height_ratios=(1.15, 1))
    fig.suptitle(
        f"Notes API under wrk, {CONNECTIONS} connections, {run.settings['duration']} s per "
        f"endpoint ({run.machine['nproc']} CPUs, {run.machine['date'][:10]})",
        fontsize=13,
    )
    top = None
    for i, db in enumerate(dbs):
        ax = fig.add_subplot(grid[0, i], sharey=top)
        top = top or ax
        rows = [run.baseline, *run.databases[db]]
        labels = ["baseline", *(r.name for r in run.databases[db])]
        width = 0.26
        for j, (label, attr, color) in enumerate(PERCENTILES):
            xs = [k + (j - 1) * width for k in range(len(rows))]
            values = [getattr(r, attr) for r in rows]
            bars = ax.bar(xs, values, width, label=label, color=color)
            if label == "p99":
                ax.bar_label(bars, labels=[_ms(v) for v in values], fontsize=7, padding=2)
        ax.set_yscale("log")
        ax.set_xticks(range(len(rows)), [_wrap(x) for x in labels], fontsize=8.5)
        ax.set_title(f"{db}: latency (ms, log scale)")
        ax.grid(axis="y", which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="upper left")
    ax = fig.add_subplot(grid[1, :])
    _ratios(ax, run, dbs)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ratios(ax: Any, run: Run, dbs: list[str]) -> None:
    endpoints = [r.name for r in run.databases[dbs[0]]] if dbs else []
    width = 0.8 / max(len(dbs), 1)
    top = 0.0
    for i, db in enumerate(dbs):
        by_name = {r.name: r for r in run.databases[db]}
        xs = [k + (i - (len(dbs) - 1) / 2) * width for k in range(len(endpoints))]
        ratios = [run.ratio(by_name[e]) for e in endpoints]
        top = max(top, *ratios)
        bars = ax.bar(xs, ratios, width, label=db, color=DB_COLORS.get(db))
        labels = [
            f"{q:.3f}x\n{by_name[e].rps:,.0f}/s" for q, e in zip(ratios, endpoints, strict=True)
        ]
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    for k, endpoint in enumerate(endpoints):
        # The strictest database's target (Postgres's, where both have one).
        floors = [RATIO_TARGETS[db].get(endpoint) for db in dbs if db in RATIO_TARGETS]
        floor = max((f for f in floors if f is not None), default=None)
        if floor is not None:
            top = max(top, floor)
            ax.hlines(floor, k - 0.45, k + 0.45, colors="#d62728", linestyles="--", linewidth=1.5)
            ax.annotate(
                f"target {floor:.2f}",
                (k + 0.45, floor),
                fontsize=8,
                color="#d62728",
                ha="right",
                va="bottom",
            )
    ax.set_ylim(0, top * 1.3 or 1)
    ax.set_xticks(range(len(endpoints)), endpoints)
    ax.set_ylabel("req/s ÷ baseline req/s")
    ax.set_title(f"Throughput as a ratio to the baseline ({run.baseline.rps:,.0f} req/s)")
    ax.grid(axis="y", alpha=0.25)
    ax.legend(fontsize=9, loc="upper right")


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _wrap(name: str) -> str:
    return name.replace(" ", "\n", 1)
