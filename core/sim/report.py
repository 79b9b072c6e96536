"""Text tables: our numbers beside the paper's, one block per workload setting."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["format_tables", "paper_real_context"]

_KEY = ("setting", "scenario", "alpha", "cost_ratio", "selector_accuracy", "cache_size", "num_queries",
        "num_requests")


def _cell_key(row: dict) -> tuple:
    return tuple(row[k] for k in _KEY)


def _fmt(x: float | None, width: int = 7) -> str:
    if x is None:
        return "-".rjust(width)
    return f"{x:{width}.2f}" if abs(x) < 1e4 else f"{x:{width}.0f}"


def format_tables(suite: str, rows: Iterable[dict], summaries: Iterable[dict], unit: str) -> str:
    rows = list(rows)
    by_cell: dict[tuple, list[dict]] = {}
    for r in rows:
        by_cell.setdefault(_cell_key(r), []).append(r)
    summ = {_cell_key(s): s for s in summaries}
    out = []
    for key, cell_rows in by_cell.items():
        setting, scenario, alpha, ratio, acc, cache_size, nq, nr = key
        seeds = cell_rows[0]["seeds"]
        selectors = list(dict.fromkeys(r["selector"] for r in cell_rows))
        caches = list(dict.fromkeys(r["cache"] for r in cell_rows))
        out.append(f"\n{suite} [{setting}] {scenario}, alpha={alpha}, cost_ratio={ratio:.4g}, "
                   f"selector accuracy={acc}, cache={cache_size}, queries={nq or 'all'}, "
                   f"requests={nr}: {unit} (mean ± 95% CI over {seeds} paired seeds) [paper]")
        has_paper = any(r["paper_cost"] is not None for r in cell_rows)
        table = {(r["cache"], r["selector"]): r for r in cell_rows}
        cells = {}
        for (c, s), r in table.items():
            txt = f"{_fmt(r['mean_cost']).strip()} ± {_fmt(r['ci95']).strip()}"
            if has_paper:
                txt += f" [{_fmt(r['paper_cost']).strip()}]"
            cells[(c, s)] = txt
        colw = max(len(t) for t in cells.values()) + 3
        out.append("  cache  " + "".join(s.rjust(colw) for s in selectors))
        for c in caches:
            out.append(f"  {c:<6} " + "".join(cells[(c, s)].rjust(colw) for s in selectors))
        s = summ.get(key)
        if s:
            paper_ratio = ""
            pb = table.get(("lfu", "large"), {}).get("paper_cost")
            po = table.get(("lec", "selector"), {}).get("paper_cost")
            if pb and po:
                paper_ratio = f"; paper {pb / po:.2f}x"
            out.append(f"  LFU+large / LEC+selector: {s['ratio_of_means']:.2f}x (ratio of means), "
                       f"per-seed median {s['median_ratio']:.2f}x, range {s['min_ratio']:.2f}-"
                       f"{s['max_ratio']:.2f}x{paper_ratio}; best other method: {s['best_other']} "
                       f"({s['best_other_ratio']:.2f}x LEC+selector's cost)")
    return "\n".join(out)


def paper_real_context() -> str:
    """The paper's real-data tables (other data and models than our MMLU suite), for context."""
    from cachemux.sim.paper import PAPER_LAMBADA, PAPER_OASST

    lines = ["\nFor context, the paper's real-data results (other datasets and models; cost/1000):"]
    for name, table, unit in (("Lambada, OPT-1.3B vs OPT-13B, FLOPs ratio ~10, offline", PAPER_LAMBADA,
                               "TFLOPs"),
                              ("OASST, FastChat-T5 vs Vicuna-13B, latency ratio 1.85, online", PAPER_OASST,
                               "seconds")):
        lines.append(f"  {name} ({unit}):")
        for (scenario, alpha, acc), row in table.items():
            cells = "  ".join(f"{c}+{s}={v:.2f}" for (c, s), v in row.items())
            ratio = row[("lfu", "large")] / row[("lec", "selector")]
            lines.append(f"    alpha={alpha} acc={acc}: {cells}  -> LFU+large/LEC+selector {ratio:.2f}x")
    return "\n".join(lines)
