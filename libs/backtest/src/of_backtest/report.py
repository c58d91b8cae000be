"""The backtest report: one self-contained HTML file (inline SVG plots, no external URL) and the
summary behind it (``summary.json``, ``forward_returns.csv``), plus the terminal's headline table.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from of_backtest import export, stats
from of_backtest.run import Result
from ofcommon.instruments import Registry
from ofcommon.sessions import session_bounds

FILE: Final = "report.html"
HOUR_NS: Final = 3_600_000_000_000
plt.rcParams["svg.hashsalt"] = "orderflow-backtest"  # stable element ids: same input, same bytes
plt.rcParams["svg.fonttype"] = "none"  # text as text: small files


def _session_hour(registry: Registry, symbol: str, ts: int) -> int:
    start, _ = session_bounds(registry.get(symbol).session_spec, ts)
    return max(0, (ts - start) // HOUR_NS)


def build(result: Result, registry: Registry, costs: dict[str, stats.Costs]) -> dict[str, Any]:
    """Everything the report shows, as plain data (written to ``summary.json`` too)."""
    collected = result.pipeline.collected
    tick = {s: registry.get(s).tick_size for s in collected}
    trades = [
        {**t, "session_hour": _session_hour(registry, t["symbol"], t["entry_ts"])}
        for t in result.journal.trades
    ]
    closed = sorted(
        (t for t in trades if t["r_multiple"] is not None),
        key=lambda t: (t["exit_ts"], t["symbol"], t["trade_id"]),
    )
    signals = export.signal_rows(collected)
    bars = [
        {"symbol": s, "close_ts": ts, "close": px}
        for s in sorted(collected)
        for ts, px in collected[s].closes
    ]
    stop = stats.median_stop_ticks(trades, tick)
    forward = stats.forward_returns(signals, bars, tick, costs)
    sanity = {
        s: {w: tap.sanity() for w, tap in collected[s].ofi.items()} for s in sorted(collected)
    }
    dead = Counter(f"{d.symbol}: {d.reason.split('(')[0]}" for d in result.pipeline.dead_letters())
    tallies = result.pipeline.tallies()
    quality = {
        s: {
            "trades": c.trades,
            "first_ts": c.first_ts,
            "last_ts": c.last_ts,
            "input_gaps": dict(sorted(c.input_gaps.items())),
            "gapped_bars": c.gapped_bars,
            "late_trades": tallies.get(s, {}).get("late_trades", 0.0),
            "duplicate_trades": tallies.get(s, {}).get("duplicate_trades", 0.0),
            "side_source_share": {
                k.name.lower(): v / c.trades for k, v in sorted(c.side_sources.items()) if c.trades
            },
        }
        for s, c in sorted(collected.items())
    }
    intake = result.intake
    return {
        "source": intake.description,
        "instruments": sorted(collected),
        "input": {
            "files": intake.stats.files,
            "frames": intake.stats.frames,
            "messages": dict(sorted(intake.stats.messages.items())),
            "bad_frames": intake.stats.bad_frames,
            "truncated_files": intake.stats.truncated_files,
        },
        "dead_letters": {
            "frames": len(intake.bad_frames),
            "folds": dict(sorted(dead.items())),
        },
        "costs": {s: {"fee": c.fee, "spread_ticks": c.spread_ticks} for s, c in costs.items()},
        "trades": stats.trade_stats(trades),
        "by_exit_reason": stats.grouped(trades, "exit_reason"),
        "by_grade": stats.grouped(trades, "grade"),
        "by_session_hour": stats.grouped(trades, "session_hour"),
        "equity_r": [t["r_multiple"] for t in closed],
        "excursions": [[t["mae_ticks"], t["mfe_ticks"], t["r_multiple"]] for t in closed],
        "median_stop_ticks": None if math.isnan(stop) else stop,
        "signals": len(signals),
        "bars": len(bars),
        "forward": stats.forward_table(forward, stop),
        "sanity": sanity,
        "quality": quality,
        "bias_sessions": len(result.journal.bias),
    }


# --- rendering ------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def plot_equity(top: Any, bottom: Any, rs: list[float]) -> None:
    """Equity in R over the closed trades (``top``) and its drawdown (``bottom``)."""
    equity, dd = [0.0], [0.0]  # from zero, before the first trade
    total = peak = 0.0
    for r in rs:
        total += r
        peak = max(peak, total)
        equity.append(total)
        dd.append(total - peak)
    x = list(range(len(rs) + 1))
    top.plot(x, equity, color="#1f6feb", drawstyle="steps-post")
    top.set_ylabel("equity (R)")
    top.axhline(0, color="#888", lw=0.5)
    bottom.fill_between(x, dd, 0, color="#d1242f", step="post", alpha=0.5)
    bottom.set_ylabel("drawdown (R)")
    bottom.set_xlabel("closed trade #")


def plot_hist(ax: Any, rs: list[float]) -> None:
    ax.hist(rs, bins=max(5, min(40, len(rs))), color="#6e7781")
    ax.axvline(0, color="#d1242f", lw=0.8)
    ax.set_xlabel("R per trade")
    ax.set_ylabel("trades")


def plot_excursions(ax: Any, points: list[list[Any]]) -> None:
    mae = [p[0] or 0.0 for p in points]
    mfe = [p[1] or 0.0 for p in points]
    color = ["#1a7f37" if (p[2] or 0) > 0 else "#d1242f" for p in points]
    ax.scatter(mae, mfe, c=color, s=12)
    ax.set_xlabel("MAE (ticks)")
    ax.set_ylabel("MFE (ticks)")


def plot_forward(ax: Any, rows: list[dict[str, Any]], horizon: int | None = None) -> None:
    """Hit rate before costs with its 95 % interval per pattern and grade, by horizon (or at one
    ``horizon``)."""
    groups = sorted({(r["pattern"], r["grade"]) for r in rows})
    for n, (pattern, grade) in enumerate(groups):
        pts = sorted(
            (r["horizon_min"], r["gross_hit_rate"], r["gross_hit_lo"], r["gross_hit_hi"])
            for r in rows
            if (r["pattern"], r["grade"]) == (pattern, grade)
            and (horizon is None or r["horizon_min"] == horizon)
        )
        x = [p[0] + 0.15 * (n - len(groups) / 2) for p in pts]
        y = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, label=f"{pattern} {grade}")
    ax.axhline(0.5, color="#888", lw=0.5)
    ax.set_xticks(list(stats.HORIZONS_MIN))
    ax.set_xlabel("horizon (min)")
    ax.set_ylabel("hit rate (before costs)")
    ax.set_ylim(0, 1)
    if groups:
        ax.legend(fontsize=7, ncol=2)


def _equity_svg(rs: list[float]) -> str:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 3.6), sharex=True, height_ratios=(3, 1))
    plot_equity(top, bottom, rs)
    fig.tight_layout()
    return _svg(fig)


def _hist_svg(rs: list[float]) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3))
    plot_hist(ax, rs)
    fig.tight_layout()
    return _svg(fig)


def _scatter_svg(points: list[list[Any]]) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3))
    plot_excursions(ax, points)
    fig.tight_layout()
    return _svg(fig)


def _forward_svg(rows: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(7, 3))
    plot_forward(ax, rows)
    fig.tight_layout()
    return _svg(fig)


_CSS: Final = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#1f2328}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d0d7de;padding:2px 8px;
text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1em}.note{color:#57606a}svg{max-width:100%;height:auto}
"""


def _trade_rows(groups: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [
        [
            k,
            str(g["trades"]),
            _pct(g["win_rate"]),
            _fmt(g["expectancy_r"]),
            _fmt(g["profit_factor"]),
            _fmt(g["total_r"]),
        ]
        for k, g in groups.items()
    ]


def _sections(s: dict[str, Any]) -> list[str]:
    t = s["trades"]
    out = [
        "<h2>Trades</h2>",
        _table(
            ["trades", "open", "win rate", "expectancy (R)", "profit factor", "max DD (R)"],
            [
                [
                    str(t["trades"]),
                    str(t["open"]),
                    _pct(t["win_rate"]),
                    _fmt(t["expectancy_r"]),
                    _fmt(t["profit_factor"]),
                    _fmt(t["max_drawdown_r"]),
                ]
            ],
        ),
    ]
    if s["equity_r"]:
        out.append(
            '<div class="plots">'
            + _equity_svg(s["equity_r"])
            + _hist_svg(s["equity_r"])
            + _scatter_svg(s["excursions"])
            + "</div>"
        )
    else:
        out.append('<p class="note">No closed trade in this run.</p>')
    head = ["", "trades", "win rate", "expectancy (R)", "profit factor", "total R"]
    for title, key in (
        ("By exit reason", "by_exit_reason"),
        ("By grade", "by_grade"),
        ("By hour of the session", "by_session_hour"),
    ):
        out += [f"<h3>{title}</h3>", _table(head, _trade_rows(s[key]))]
    out.append("<h2>Signals: forward returns by pattern and grade</h2>")
    stop = s["median_stop_ticks"]
    out.append(
        f'<p class="note">{s["signals"]} signals on {s["bars"]} closed 1-minute bars. Return: from'
        " the close of the last closed 1-minute bar at the decision time to the close of the last"
        " bar closed by the horizon, in the signal's direction; R = ticks / the median initial"
        f" stop of the run's trades ({_fmt(stop)} ticks). Hit: return &gt; 0; 95 % bootstrap"
        " interval (1,000 resamples). Net = after costs (fees both sides and the spread).</p>"
    )
    rows = []
    for r in s["forward"]:
        row = [r["pattern"], r["grade"], f"+{r['horizon_min']}m", str(r["n"])]
        for side in ("gross", "net"):
            row += [
                _fmt(r[f"{side}_mean_ticks"]),
                _fmt(r[f"{side}_mean_r"]),
                f"{_pct(r[f'{side}_hit_rate'])} [{_pct(r[f'{side}_hit_lo'])},"
                f" {_pct(r[f'{side}_hit_hi'])}]",
            ]
        rows.append(row)
    fwd_head = ["pattern", "grade", "horizon", "n", "ticks", "R", "hit rate [95 % CI]"]
    out.append(_table([*fwd_head, "net ticks", "net R", "net hit rate [95 % CI]"], rows))
    if s["forward"]:
        out.append(_forward_svg(s["forward"]))
    out.append("<h2>Pipeline sanity (landscape.md §4 A1–A2)</h2>")
    out.append(
        '<p class="note">Contemporaneous R² of the mid-price change on best-level order-flow'
        " imbalance (Cont, Kukanov &amp; Stoikov) and on trade imbalance (signed volume, the bar"
        " delta at 1 minute), per bucket. Published studies: 0.4–0.7 for OFI, about half that for"
        " trade imbalance; a far lower figure points at the data first.</p>"
    )
    rows = [
        [sym, w, str(v["buckets"]), _fmt(v["r2_ofi"], 3), _fmt(v["r2_trade_imbalance"], 3)]
        for sym, ws in s["sanity"].items()
        for w, v in ws.items()
    ]
    out.append(_table(["instrument", "bucket", "buckets", "R² OFI", "R² trade imbalance"], rows))
    out.append("<h2>Data quality</h2>")
    rows = []
    for sym, q in s["quality"].items():
        share = ", ".join(f"{k} {_pct(v)}" for k, v in q["side_source_share"].items())
        gaps = ", ".join(f"{k} {v}" for k, v in q["input_gaps"].items()) or "0"
        rows.append(
            [
                sym,
                str(q["trades"]),
                gaps,
                str(q["gapped_bars"]),
                _fmt(q["late_trades"], 0),
                _fmt(q["duplicate_trades"], 0),
                share or "–",
            ]
        )
    head = ["instrument", "trades", "gaps", "gapped bars", "late", "duplicates", "sides"]
    out.append(_table(head, rows))
    dl = s["dead_letters"]
    folds = ", ".join(f"{k} ×{v}" for k, v in dl["folds"].items()) or "none"
    inp = s["input"]
    out.append(
        f"<p>Dead letters: {dl['frames']} frames the parsers refused; folds: {folds}."
        f" Input: {inp['files']} files, {inp['frames']} frames, messages"
        f" {html.escape(json.dumps(inp['messages']))}, {inp['truncated_files']} truncated.</p>"
    )
    return out


def render(s: dict[str, Any]) -> str:
    title = f"OrderFlow backtest: {', '.join(s['instruments']) or 'no instrument'}"
    body = "\n".join(_sections(s))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(s['source'])}</p>{body}</body></html>\n"
    )


def write(out: Path, summary: dict[str, Any]) -> Path:
    """``report.html``, ``summary.json`` and ``forward_returns.csv`` into ``out``."""
    (out / "summary.json").write_text(
        json.dumps(summary, indent=1, sort_keys=True, allow_nan=False, default=str) + "\n"
    )
    with (out / "forward_returns.csv").open("w", newline="") as f:
        rows = summary["forward"]
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    path = out / FILE
    path.write_text(render(summary), encoding="utf-8")
    return path


def headline(s: dict[str, Any]) -> str:
    t = s["trades"]
    lines = [
        s["source"],
        f"instruments {', '.join(s['instruments']) or '(none)'}: {t['trades']} closed trades,"
        f" win rate {_pct(t['win_rate'])}, expectancy {_fmt(t['expectancy_r'])} R,"
        f" profit factor {_fmt(t['profit_factor'])}, max drawdown {_fmt(t['max_drawdown_r'])} R;"
        f" {s['signals']} signals, {s['bars']} closed 1m bars, {s['bias_sessions']} bias sessions",
        "",
        f"{'pattern':<11} {'grade':<5} {'horizon':>7} {'n':>5} {'ticks':>8} {'hit':>7}"
        f" {'95 % CI':>15} {'net hit':>8}",
    ]
    for r in s["forward"]:
        ci = f"[{_pct(r['gross_hit_lo'])}, {_pct(r['gross_hit_hi'])}]"
        lines.append(
            f"{r['pattern']:<11} {r['grade']:<5} {'+' + str(r['horizon_min']) + 'm':>7}"
            f" {r['n']:>5} {_fmt(r['gross_mean_ticks']):>8} {_pct(r['gross_hit_rate']):>7}"
            f" {ci:>15} {_pct(r['net_hit_rate']):>8}"
        )
    if not s["forward"]:
        lines.append("(no signal with a forward return)")
    return "\n".join(lines)
