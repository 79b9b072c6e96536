"""PNG plots of the suites: cost vs cache size, cost vs alpha, online cumulative regret."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_cost_vs_alpha", "plot_cost_vs_cache", "plot_regret", "pyplot"]

_SHOW = (("lfu", "large"), ("lfu", "selector"), ("lru", "large"), ("lec", "large"),
         ("lec", "cascade"), ("lec", "small"), ("gdsf", "selector"), ("lec", "selector"))


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, imported on first use: nothing else in
    cachemux needs matplotlib."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"plots need matplotlib (pip install matplotlib), or skip them: {exc}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(rows: list[dict], x: str, where: dict) -> dict[str, tuple[list, list, list]]:
    out: dict[str, tuple[list, list, list]] = {}
    for cache, sel in _SHOW:
        pts = sorted((r[x], r["mean_cost"], r["ci95"]) for r in rows
                     if r["cache"] == cache and r["selector"] == sel and all(r[k] == v for k, v in where.items()))
        if pts:
            out[f"{cache.upper()}+{sel}"] = tuple(map(list, zip(*pts)))  # type: ignore[assignment]
    return out


def _draw(ax, series, log_x=False) -> None:
    for label, (xs, ys, cis) in series.items():
        ax.errorbar(xs, ys, yerr=cis, marker="o", capsize=3, label=label,
                    linewidth=2.5 if label == "LEC+selector" else 1.2)
    if log_x:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)


def plot_cost_vs_cache(rows: list[dict], path: Path, unit: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _draw(ax, _series(rows, "cache_size", {"setting": "cache-sweep"}), log_x=True)
    ax.set_xlabel("cache size (entries)")
    ax.set_ylabel(f"total cost / 1000 ({unit})")
    ax.set_title("MMLU routing (1,000 queries, alpha=0.5, online): cost vs cache size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_cost_vs_alpha(syn_rows: list[dict], routing_rows: list[dict], path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    _draw(axes[0], _series(syn_rows, "alpha", {"scenario": "online", "cost_ratio": 100.0}))
    axes[0].set_title("synthetic, online, cost ratio 100 (20 queries, cache 8)")
    _draw(axes[1], _series(routing_rows, "alpha", {"setting": "paper", "scenario": "online"}))
    axes[1].set_title("MMLU routing, online (100 queries, cache 40)")
    for ax, unit in zip(axes, ("cost units", "$")):
        ax.set_xlabel("alpha (smaller = more skewed popularity)")
        ax.set_ylabel(f"total cost / 1000 ({unit})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_regret(curves: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """``curves[label]`` = mean cumulative regret per request (vs the offline optimum)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, y in curves.items():
        t = np.arange(1, len(y) + 1)
        ax.plot(t, np.maximum(y, 1e-3), label=label, linewidth=2.5 if label == "LEC+selector" else 1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests")
    ax.set_ylabel("cumulative regret (cost units)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
