"""Markdown tables and PNG charts from one run's results (``bench/results/NAME.*``)."""

from __future__ import annotations

import importlib.util
import subprocess
from typing import Any

from bench.common import PYTHON, RESULTS, log
from bench.freshness import PATHS
from bench.throughput import VARIANTS


def _pyplot() -> Any:
    if importlib.util.find_spec("matplotlib") is None:
        log("matplotlib is missing: pip install matplotlib (into this virtualenv)")
        subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "matplotlib"], check=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tables(results: dict[str, Any]) -> str:
    out: list[str] = []
    m = results["machine"]
    cpu = m["cpu"]
    out += [
        f"Run: `{results['command']}` at {results['started']}, {results['seconds']:.0f} s. "
        f"Machine: {cpu.get('Model name', '?')}, {cpu.get('CPU(s)', '?')} CPUs, {m['memory']} RAM, "
        f"Linux {m['kernel']}; Python {m['python']}, Django {m['django']}, "
        f"PostgreSQL {m['postgresql']}, Redis {m['redis']}, {m['gunicorn']}, {m['wrk']}. "
        f"Load average at start: {m['load_average_at_start']}.",
        "",
    ]
    for name, error in (results.get("errors") or {}).items():
        out += [f"**{name} failed**: `{error}`", ""]
    tp = results.get("throughput")
    if tp:
        out += [
            "### Throughput and latency",
            "",
            f"gunicorn, {tp['workers']} sync workers; wrk, 1 thread, {tp['connections']} "
            f"connections; {tp['rounds']} round(s) x {tp['seconds_per_run']} s per variant, "
            f"interleaved. Mix: {tp['mix']} ({tp['posts_in_mix']} posts).",
            "",
            "| Variant | req/s | p50 ms | p99 ms | x no cache | x floor | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for v in VARIANTS:
            r = tp["variants"][v]
            out.append(
                f"| {r['label']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['vs_nocache']:.2f} | {r['vs_floor']:.2f} | {r['errors']} |"
            )
        fc, dj = tp["variants"]["fc-redis"], tp["variants"]["django"]
        out += ["", f"freshcache (Redis) / Django cache_page (Redis): "
                    f"**{fc['rps'] / dj['rps']:.2f}x** requests/s.", ""]
    cap = results.get("capture")
    if cap:
        out += [
            "### Capture overhead on a miss",
            "",
            "| pairs | median without (ms) | median with (ms) | ratio of medians | "
            "ratio of sums | median pair ratio | tags per render |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {cap['pairs']} | {cap['median_without_ms']:.2f} | {cap['median_with_ms']:.2f} | "
            f"{cap['ratio_of_medians']:.3f} | {cap['ratio_of_sums']:.3f} | "
            f"{cap['median_pair_ratio']:.3f} | {cap['tags_per_render']:.0f} |",
            "",
        ]
    hc = results.get("hitcost")
    if hc and "django" in hc and "fc-redis" in hc:
        dj, fc = hc["django"], hc["fc-redis"]
        near = hc.get("fc-near")
        near_cells = (
            f" {near['page_hit']['median_us']:.0f} | "
            f"{near['page_hit']['median_us'] / dj['page_hit']['median_us']:.2f} |"
            if near
            else " - | - |"
        )
        out += [
            "### One hit in-process (no HTTP, no middleware; microseconds, medians)",
            "",
            "| Django cache_page hit (Redis) | freshcache cache_page hit (Redis) | "
            "freshcache / Django | freshcache with near cache | near / Django | floor view | "
            "Django: two cache.get() | freshcache: one store.lookup() |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {dj['page_hit']['median_us']:.0f} | {fc['page_hit']['median_us']:.0f} | "
            f"{fc['page_hit']['median_us'] / dj['page_hit']['median_us']:.2f} |{near_cells} "
            f"{fc['floor_view']['median_us']:.0f} | {dj['store_calls']['median_us']:.0f} | "
            f"{fc['store_calls']['median_us']:.0f} |",
            "",
        ]
    fan = results.get("fanout")
    if fan:
        out += [
            "### Invalidation cost vs fan-out (saving one comment)",
            "",
            "| Store | entries depending on the tag | first save ms | median save ms | "
            "p90 save ms | median invalidate() ms | all invalidated |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for store, data in fan.items():
            for lv in data["levels"]:
                out.append(
                    f"| {store} | {lv['entries']:,} | {lv['first_save_ms']:.2f} | "
                    f"{lv['median_save_ms']:.2f} | {lv['p90_save_ms']:.2f} | "
                    f"{lv['median_invalidate_ms']:.3f} | "
                    f"{'yes' if lv['invalidated'] and lv['valid_before'] else 'NO'} |"
                )
        out.append("")
        mem = fan.get("redis", {}).get("memory")
        if mem:
            n = max(lv["entries"] for lv in fan["redis"]["levels"])
            out += [
                f"### Redis memory ({n:,} entries, {mem['tags_per_entry']:.0f} tags each, "
                f"{mem['body_bytes']:,}-byte bodies)",
                "",
                "| MEMORY USAGE per entry | payload (body + 35-byte MAC header) | "
                "beyond the body | same payload as a plain string | beyond that string | "
                "per tag | tag keys | tag keys bytes | bytes per tag key |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                f"| {mem['median_entry_bytes']:,.0f} | {mem['median_payload_bytes']:,.0f} | "
                f"{mem['median_bytes_beyond_body']:,.0f} | {mem['plain_string_bytes']:,} | "
                f"{mem['bytes_beyond_plain_string']:,.0f} | "
                f"{mem['bytes_beyond_plain_string_per_tag']:.0f} | {mem['tag_keys']:,} | "
                f"{mem['tag_keys_bytes']:,} | {mem['bytes_per_tag_key']:.0f} |",
                "",
            ]
    fr = results.get("freshness")
    if fr:
        out += [
            "### Freshness checker",
            "",
            "| Variant | seconds | writes | reads | reads checked | page-cache hits | "
            "stale reads | " + " | ".join(PATHS) + " | max staleness ms | write errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | "
            + " | ".join("---:" for _ in PATHS) + " | ---: | ---: |",
        ]
        for variant, r in fr.items():
            hits = f"{r['hits']:,}" if variant.startswith("fc-") else "n/a"
            by_path = r["stale_by_path"]
            out.append(
                f"| {variant} | {r['seconds']:.0f} | {r['writes']} | {r['reads']:,} | "
                f"{r['reads_checked']:,} | {hits} | **{r['stale_reads']:,}** | "
                + " | ".join(f"{by_path[p]:,}" if p in by_path else "n/a" for p in PATHS)
                + f" | {r['max_staleness_ms']:.0f} | {r['write_errors']} |"
            )
        out.append("")
        if any(not r.get("relays", True) for r in fr.values()):
            out += ["The control run (relays off) is the same checker with `RELAY: False` in "
                    "the server and the writer: nothing applies the invalidation log, so only "
                    "the outside writes can be stale, and they must be, or the checker could not "
                    "see a lost outside invalidation.", ""]
    out += log_tables(results)
    out += flood_table(results)
    return "\n".join(out)


def flood_table(results: dict[str, Any]) -> list[str]:
    """Random query strings against a Redis at maxmemory (bench/memory_flood.py)."""
    fl = results.get("flood")
    if not fl:
        return []
    out = [
        "## A flood of random query strings, Redis at maxmemory",
        "",
        "| Policy | requests | maxmemory | peak used_memory (sampled / Redis peak) | evicted "
        "keys | statuses | fixed-page hit rate | fresh after a write | req/s |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    mib = 1024 * 1024
    for policy, r in fl.items():
        statuses = ", ".join(f"{k}: {v:,}" for k, v in r["statuses"].items())
        out.append(
            f"| {policy} | {r['requests']:,} | {r['maxmemory'] / mib:.0f} MiB | "
            f"{r['peak_used_memory_sampled'] / mib:.2f} / {r['used_memory_peak'] / mib:.2f} MiB | "
            f"{r['evicted_keys']:,} | {statuses} | {r['fixed_page_hit_rate']:.1%} | "
            f"{r['freshness_checks'] - r['stale_reads']}/{r['freshness_checks']} | "
            f"{r['requests'] / r['seconds']:.0f} |"
        )
    out.append("")
    return out


def _dist(d: dict[str, Any]) -> str:
    if not d.get("n"):
        return "n/a"
    return f"{d['p50']:.1f} / {d['p99']:.1f} / {d['max']:.1f}"


def log_tables(results: dict[str, Any]) -> list[str]:
    """The invalidation log's tables: write overhead, misses per write, relay lags."""
    out: list[str] = []
    wc = results.get("writes")
    if wc:
        out += [
            "### Write overhead of the invalidation log (PostgreSQL, Redis store)",
            "",
            f"In one process, variants interleaved: {wc['rounds']} rounds, each variant once "
            f"per round in rotating order; per block {wc['saves_per_block']} saves, one "
            f"{wc['update_rows']:,}-row update and one {wc['bulk_rows']:,}-row bulk_create. "
            "Medians in ms; ratios against no freshcache (target for c: within 1.3x). (c) is "
            "freshcache as shipped; in (d) this process runs no relay and the log is applied "
            "between the timed calls, as a relay in another process would.",
            "",
            "| Operation | samples | (a) no freshcache | (b) freshcache, no log | (c) + log + "
            "triggers, in-process relay | (d) + log + triggers, relay elsewhere | b / a | "
            "c / a | d / a | c / a, median of per-round ratios | c / b | d / b | relay's "
            "drain after the write, c / d (median ms) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: |",
        ]
        names = {"save": "one `save()`", "update": f"`update()` of {wc['update_rows']:,} rows",
                 "bulk": f"`bulk_create` of {wc['bulk_rows']:,} rows"}
        for op, r in wc["ops"].items():
            m = r["median_ms"]
            out.append(
                f"| {names[op]} | {r['samples']} | {m['none']:.2f} | {m['nolog']:.2f} | "
                f"{m['log']:.2f} | {m['logsync']:.2f} | {r['nolog_vs_none']:.2f} | "
                f"**{r['log_vs_none']:.2f}** | **{r['logsync_vs_none']:.2f}** | "
                f"{r['log_vs_none_round_median']:.2f} | {m['log'] / m['nolog']:.2f} | "
                f"{m['logsync'] / m['nolog']:.2f} | {r['log_drain_ms_median']:.1f} / "
                f"{r['logsync_drain_ms_median']:.1f} |"
            )
        out.append("")
    rl = results.get("relay")
    if not rl:
        return out
    out += [
        "### Misses per write, with and without the relay",
        "",
        "| Relay | write | writes | recomputes | per write | max | stale reads after the "
        "write returned |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant, kinds in rl["misses_per_write"].items():
        for kind, r in kinds.items():
            out.append(
                f"| {variant} | {kind} | {r['writes']} | {r['recomputes']} | "
                f"**{r['per_write']:.2f}** | {r['max']} | {r['stale_reads']} |"
            )
    out.append("")
    og = rl["outage"]
    out += [
        "### Relay lag after a store outage",
        "",
        f"{og['rounds']} rounds: a throwaway redis-server paused (SIGSTOP), "
        f"{og['writes_per_round']} `save()` calls whose bumps fail (each returned after "
        f"p50 {og['failed_write_ms']['p50']:.0f} ms, the socket timeout), then resumed "
        "(SIGCONT). Times in ms after SIGCONT, p50 / p99 / max over rounds. The log was empty "
        f"after {_dist(og['log_empty_after_sigcont_ms'])} ms.",
        "",
        "| Reader | reads | stale reads | stale reads after SIGCONT | stale until (ms) | "
        "every value a fresh hit again (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in og["readers"].items():
        out.append(
            f"| {name} | {r['reads']:,} | **{r['stale_reads']}** | {r['stale_reads_after_sigcont']}"
            f" | {_dist(r['stale_until_ms'])} | {_dist(r['fresh_hits_again_ms'])} |"
        )
    ow = rl["outside"]
    out += [
        "",
        "### Freshness lag of writes made outside Django",
        "",
        f"{ow['writes']} `UPDATE`s through a psycopg connection of their own (autocommit), "
        "100-200 ms apart. ms after the commit returned, p50 / p99 / max (target: p99 under "
        "50 ms).",
        "",
        "| Reader | first fresh read completed | last stale read started | stale reads |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, r in ow["readers"].items():
        out.append(
            f"| {name} | {_dist(r['first_fresh_read_ms'])} | {_dist(r['stale_window_ms'])} | "
            f"{r['stale_reads']} |"
        )
    out.append("")
    return out


def charts(results: dict[str, Any], name: str) -> list[str]:
    plt = _pyplot()
    made = []
    tp = results.get("throughput")
    if tp:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        labels = [tp["variants"][v]["label"].replace(" ", "\n") for v in VARIANTS]
        rps = [tp["variants"][v]["rps"] for v in VARIANTS]
        colors = ["#999", "#d62728", "#1f77b4", "#1f77b4", "#1f77b4", "#2ca02c"]
        ax1.bar(range(len(VARIANTS)), rps, color=colors)
        ax1.set_xticks(range(len(VARIANTS)), labels, fontsize=7)
        ax1.set_ylabel("requests/s")
        ax1.set_title("Throughput (higher is better)")
        for i, value in enumerate(rps):
            ax1.text(i, value, f"{value:.0f}", ha="center", va="bottom", fontsize=8)
        x = range(len(VARIANTS))
        ax2.bar([i - 0.2 for i in x], [tp["variants"][v]["p50_ms"] for v in VARIANTS], 0.4,
                label="p50")
        ax2.bar([i + 0.2 for i in x], [tp["variants"][v]["p99_ms"] for v in VARIANTS], 0.4,
                label="p99")
        ax2.set_yscale("log")
        ax2.set_xticks(list(x), labels, fontsize=7)
        ax2.set_ylabel("latency, ms (log)")
        ax2.set_title("Latency (lower is better)")
        ax2.legend()
        fig.tight_layout()
        made.append(_save(fig, plt, f"{name}-throughput.png"))
    fan = results.get("fanout")
    if fan:
        fig, ax = plt.subplots(figsize=(7, 4))
        for (store, data), color in zip(fan.items(), ("#2ca02c", "#d62728", "#1f77b4"),
                                        strict=False):
            xs = [lv["entries"] for lv in data["levels"]]
            ax.plot(xs, [lv["median_save_ms"] for lv in data["levels"]], marker="o",
                    color=color, label=f"{store}: save one comment")
            ax.plot(xs, [lv["median_invalidate_ms"] for lv in data["levels"]], marker="x",
                    color=color, linestyle="--", label=f"{store}: invalidate(tag)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cached entries depending on the tag")
        ax.set_ylabel("median ms (log)")
        ax.set_title("Invalidation cost vs fan-out (flat is the goal)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        made.append(_save(fig, plt, f"{name}-fanout.png"))
    fr = results.get("freshness")
    if fr:
        fig, ax = plt.subplots(figsize=(9, 4))
        width = 0.8 / len(fr)
        for k, (variant, r) in enumerate(fr.items()):
            xs = [i + (k - (len(fr) - 1) / 2) * width for i in range(len(PATHS))]
            values = [r["stale_by_path"].get(p, 0) for p in PATHS]
            bars = ax.bar(xs, values, width, label=variant)
            ax.bar_label(bars, fontsize=7)
        ax.set_xticks(range(len(PATHS)), PATHS)
        ax.set_ylabel("stale reads")
        ax.set_title("Stale reads per write path (0 is the contract)")
        ax.legend()
        fig.tight_layout()
        made.append(_save(fig, plt, f"{name}-freshness.png"))
    return made


def _save(fig: Any, plt: Any, filename: str) -> str:
    fig.savefig(RESULTS / filename, dpi=110)
    plt.close(fig)
    return filename


def write(results: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    images = charts(results, name)
    text = f"# freshcache benchmark results ({name})\n\n" + tables(results) + "\n"
    text += "".join(f"\n![{image}]({image})\n" for image in images)
    (RESULTS / f"{name}.md").write_text(text)


if __name__ == "__main__":
    import json
    import sys

    # Redraw the tables and charts of an earlier run: python -m bench.report results
    run_name = sys.argv[1] if len(sys.argv) > 1 else "results"
    write(json.loads((RESULTS / f"{run_name}.json").read_text()), run_name)
