"""Markdown tables and PNG charts from one run's results (``bench/results/NAME.*``)."""

from __future__ import annotations

import importlib.util
import subprocess
import textwrap
from typing import Any

from bench.common import PYTHON, RESULTS, log
from bench.freshness import PATHS
from bench.throughput import (
    ASGI_HITS_VARIANTS,
    ASGI_VARIANTS,
    BADGE_VARIANTS,
    HITS_VARIANTS,
    LABELS,
    VARIANTS,
)


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
    out += throughput_tables(results)
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
        out += [
            "### One hit in-process (no HTTP, no middleware; microseconds, medians)",
            "",
            "Each library's `cache_page` around the blog's view, called with `RequestFactory`. "
            "The post page's hit also runs its view_count placeholder (one query); the front "
            "page's has no per-request work. The floor view includes building the request.",
            "",
            "| Page | Django cache_page (Redis) | freshcache (Redis) | freshcache / Django | "
            "freshcache, near cache | near / Django | near - floor | floor view |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        near = hc.get("fc-near")
        floor_us = hc["fc-redis"]["floor_view"]["median_us"]
        for case, label in (("front_hit", "front page"), ("page_hit", "post page")):
            if case not in hc["django"] or case not in hc["fc-redis"]:
                continue
            dj, fc = hc["django"][case]["median_us"], hc["fc-redis"][case]["median_us"]
            if near and case in near:
                nr = near[case]["median_us"]
                near_cells = f"{nr:.0f} | {nr / dj:.2f} | {nr - floor_us:+.0f}"
            else:
                near_cells = "- | - | -"
            out.append(
                f"| {label} | {dj:.0f} | {fc:.0f} | {fc / dj:.2f} | {near_cells} | {floor_us:.0f} |"
            )
        dj_calls = hc["django"]["store_calls"]["median_us"]
        fc_calls = hc["fc-redis"]["store_calls"]["median_us"]
        out += [
            "",
            f"Store calls underneath: Django's two `cache.get()` {dj_calls:.0f} µs, freshcache's "
            f"one `store.lookup()` {fc_calls:.0f} µs.",
            "",
        ]
    stack = results.get("stackcost")
    if stack:
        out += [
            "### One front-page hit in-process through the whole stack (CPU microseconds, medians)",
            "",
            "Django's WSGI handler, the blog's middleware, URL resolution and the view, with no "
            "server and no socket (`bench/stack_cost.py`): the front page's hit, and the front "
            "page as a constant through the same handler in the same process (its floor).",
            "",
            "| Variant | front-page hit | floor (the front page as a constant) | hit - floor | "
            "hit / floor |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for variant, label in (
            ("fc-redis", "Redis"), ("fc-redis-early", "Redis, early hits"),
            ("fc-near", "near cache"), ("fc-early", "near cache, early hits"),
        ):
            data = stack.get(variant)
            if not data:
                continue
            hit, floor = data["front_hit"]["median_us"], data["floor_page"]["median_us"]
            out.append(
                f"| {label} | {hit:.0f} | {floor:.0f} | {hit - floor:+.0f} | {hit / floor:.2f} |"
            )
        out.append("")
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
            if r.get("near_hits"):  # fc-near: how many of them the near cache served
                hits += f" ({r['near_hits']:,} from the near cache"
                hits += f", {r['early_hits']:,} early)" if r.get("early_hits") else ")"
            by_path = r["stale_by_path"]
            out.append(
                f"| {variant} | {r['seconds']:.0f} | {r['writes']} | {r['reads']:,} | "
                f"{r['reads_checked']:,} | {hits} | **{r['stale_reads']:,}** | "
                + " | ".join(f"{by_path[p]:,}" if p in by_path else "n/a" for p in PATHS)
                + f" | {r['max_staleness_ms']:.0f} | {r['write_errors']} |"
            )
        out.append("")
        if any("outside_stale" in r for r in fr.values()):
            out += [
                "Outside writes: when the relays had applied them (their log rows deleted, "
                "polled every ms by the writer), and the stale reads after them by whether "
                "they started before that (the window docs/outside-writes.md states) or after "
                "(an invalidation lost: must be 0).",
                "",
                "| Variant | applied, ms after the commit returned (p50 / p99 / max) | writes "
                "not applied within 0.4 s | stale, not applied | stale, started before applied "
                "| **stale, started after applied** |",
                "| --- | ---: | ---: | ---: | ---: | ---: |",
            ]
            for variant, r in fr.items():
                if "outside_stale" not in r:
                    continue
                lag, st = r["outside_applied_ms"], r["outside_stale"]
                out.append(
                    f"| {variant} | {_dist(lag)} | {lag['not_applied']} | {st['not_applied']} | "
                    f"{st['before_applied']} | **{st['after_applied']}** |"
                )
            out.append("")
        if any(not r.get("relays", True) for r in fr.values()):
            out += ["The control run (relays off) is the same checker with `RELAY: False` in "
                    "the server and the writer: nothing applies the invalidation log, so only "
                    "the outside writes can be stale, and they must be, or the checker could not "
                    "see a lost outside invalidation.", ""]
    out += log_tables(results)
    out += flood_table(results)
    out += near_tables(results)
    out += edge_tables(results)
    out += scaled_tables(results)
    out += cluster_cost_tables(results)
    return "\n".join(out)


def scaled_tables(results: dict[str, Any]) -> list[str]:
    """bench/scaled.py: the freshness checker on a read replica and across a Sentinel and a
    Redis Cluster failover."""
    sc = results.get("scaled")
    if not sc:
        return []
    out = [
        "### Freshness scaled out (issue 14)",
        "",
        "The freshness checker on the blog reading from a streaming standby whose replay is "
        "paused for 150 ms every 500 ms (`replica`), on Redis behind Sentinel (`sentinel`) and "
        "on a 3-master Redis Cluster (`cluster`, the master of the shard holding the most "
        "entries), both with a failover halfway, the promoted replica missing 0.3 s of "
        "acknowledged bumps. Stale reads by what served them: a stale `hit` is the cache's; a "
        "stale "
        "`bypass` or `miss` is what the view read from a replica that was behind, as the site "
        "serves it without freshcache.",
        "",
        "| Setup | seconds | writes | reads checked | page-cache hits | stale reads by what "
        "served them | **stale hits** | max staleness ms | write errors | setup |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    known = ["replica", "sentinel", "cluster"]  # the JSON's keys are sorted
    for mode in sorted(sc, key=lambda m: (known.index(m) if m in known else len(known), m)):
        r = sc[mode]
        states = r.get("stale_by_state") or {}
        shown = ", ".join(f"{k} {v:,}" for k, v in sorted(states.items())) or "none"
        skip = {"masters", "slot", "shard", "old_master", "replica", "new_master"}
        setup = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in (r.get("setup") or {}).items() if k not in skip)
        out.append(
            f"| {mode} | {r['seconds']:.0f} | {r['writes']} | {r['reads_checked']:,} | "
            f"{r['hits']:,} | {shown} | **{states.get('hit', 0)}** | "
            f"{r['max_staleness_ms']:.0f} | {r['write_errors']} | {setup} |"
        )
    return [*out, ""]


def cluster_cost_tables(results: dict[str, Any]) -> list[str]:
    """bench/cluster_costs.py: store operations on Redis Cluster beside a single Redis."""
    cl = results.get("cluster")
    if not cl:
        return []
    c, tp = cl["cluster"], cl["throughput"]
    out = [
        "### Redis Cluster beside a single Redis (issue 14)",
        "",
        f"freshcache's store on a throwaway single `redis-server` and on a throwaway Redis "
        f"Cluster ({c['masters']} masters, {c['replicas']} replicas, {c['shards']} shards, "
        f"{'/'.join(map(str, c['shards_per_master']))} per master), in one process; µs per store "
        f"operation, median of {cl['rounds']} interleaved rounds (range of the round means). "
        f"Entries of {cl['entry']['payload_bytes']:,} bytes with {cl['entry']['tags']} tags. "
        f"Scripts: EVALSHA + EVAL per operation, from `INFO commandstats` on every master.",
        "",
        "| operation | single Redis µs | cluster µs | **cluster / single** | scripts single | "
        "scripts cluster |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for op in sorted(cl["ops"], key=lambda o: ["hit", "miss_set", "bump"].index(o)):
        r = cl["ops"][op]
        lo, hi = r["single_range_us"]
        clo, chi = r["cluster_range_us"]
        out.append(
            f"| {op} | {r['single_us']:.0f} ({lo:.0f}-{hi:.0f}) | {r['cluster_us']:.0f} "
            f"({clo:.0f}-{chi:.0f}) | **x{r['ratio']:.2f}** | "
            f"{cl['per_op']['single'][op]['scripts']:g} | "
            f"{cl['per_op']['cluster'][op]['scripts']:g} |"
        )
    out += [
        "",
        f"Hit throughput: {tp['processes']} processes doing lookups for {tp['seconds']:g} s, "
        f"{tp['rounds']} rounds per store, taking turns: single Redis "
        f"{tp['single_lookups_per_s']:,.0f} lookups/s, cluster {tp['cluster_lookups_per_s']:,.0f} "
        f"lookups/s (**x{tp['ratio']:.2f}**); lookups that missed: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(tp['misses'].items()))}. On {cl['cores']} cores "
        f"shared by the clients and all {c['redis_servers']} redis-servers, this cannot show "
        "throughput scaling across masters.",
        "",
    ]
    return out


def throughput_tables(results: dict[str, Any]) -> list[str]:
    """Requests/s and latency per variant, under gunicorn then uvicorn, with issue 11's ratios."""
    tp = results.get("throughput")
    if not tp:
        return []
    out = [
        "### Throughput and latency",
        "",
        f"gunicorn, {tp['workers']} sync workers; wrk, 1 thread, {tp['connections']} "
        f"connections; {tp['rounds']} round(s) x {tp['seconds_per_run']} s per variant, "
        f"interleaved. Mix: {tp['mix']} ({tp['posts_in_mix']} posts).",
        "",
        *_throughput_rows(tp["variants"], VARIANTS),
    ]
    out += _target_rows(tp.get("targets"))
    hits = tp.get("hits")
    if hits:
        out += [
            "### Hits that run no SQL",
            "",
            f"The same gunicorn servers and rounds, on the {hits['pages']}: their hits query "
            "nothing, where a post page's hit counts the view (an `UPDATE`, every variant) and "
            "freshcache's fills the live count (a `SELECT`). x floor is against the constant "
            "view of the mix above; the front page as a constant (its bytes, returned by a view "
            "of the no-cache server) is the floor of these pages: what sending them through the "
            "same stack costs with no cache at all.",
            "",
            *_throughput_rows(hits["variants"], HITS_VARIANTS),
        ]
        out += _target_rows(hits.get("targets"))
    badge = tp.get("badge")
    if badge:
        out += [
            "### The same hits with the example's cache badge",
            "",
            f"On the {badge['pages']} (`BENCH_BADGE=1`): two more gunicorn servers in the same "
            "rounds, whose pages carry the demo's corner badge, rendered per request with the "
            "page's tags (the servers above leave it out: a site does not show it).",
            "",
            *_throughput_rows(badge["variants"], BADGE_VARIANTS),
        ]
        out += _target_rows(badge.get("targets"))
    asgi = tp.get("asgi")
    if asgi:
        out += [
            "### Throughput and latency under ASGI",
            "",
            f"{asgi['server']}, {asgi['workers']} workers; the same wrk (a new connection "
            "per request), mix and rounds, interleaved with the gunicorn variants. Database "
            "connections come from Django's pool (1 to 4 per worker, see "
            "`bench/site/asgi.py`).",
            "",
            *_throughput_rows(asgi["variants"], ASGI_VARIANTS),
        ]
        out += _target_rows(asgi.get("targets"))
        asgi_hits = asgi.get("hits")
        if asgi_hits:
            out += [
                "### Hits that run no SQL, under ASGI",
                "",
                f"The same uvicorn servers and rounds, on the {asgi_hits['pages']}: a hit "
                "queries nothing, so no request touches the database pool. x floor is against "
                "the constant view under uvicorn above.",
                "",
                *_throughput_rows(asgi_hits["variants"], ASGI_HITS_VARIANTS),
            ]
            out += _target_rows(asgi_hits.get("targets"))
    return out


def _throughput_rows(variants: dict[str, Any], order: list[str]) -> list[str]:
    out = [
        "| Variant | req/s | p50 ms | p99 ms | x no cache | x floor | server CPU ms/request "
        "| errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in order:
        if v not in variants:
            continue
        r = variants[v]
        nocache = f"{r['vs_nocache']:.2f}" if "vs_nocache" in r else "n/a"
        cpu = f"{r['cpu_ms_per_request']:.2f}" if "cpu_ms_per_request" in r else "n/a"
        out.append(
            f"| {r['label']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{nocache} | {r['vs_floor']:.2f} | {cpu} | {r['errors']} |"
        )
    return [*out, ""]


def _target_rows(targets: list[dict[str, Any]] | None) -> list[str]:
    """Issue 11's ratios of requests/s, measured, next to its targets."""
    if not targets:
        return []
    out = [
        "| Requests/s ratio | whole run | median of rounds (lowest-highest) | issue 11's "
        "target | met |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for t in targets:
        a, _, b = t["ratio"].partition(" / ")
        rounds = "n/a"
        if "round_median" in t:
            low, high = t["round_range"]
            rounds = f"{t['round_median']:.2f} ({low:.2f}-{high:.2f})"
        out.append(
            f"| {LABELS.get(a, a)} / {LABELS.get(b, b)} | **{t['value']:.2f}** | {rounds} | "
            f">= {t['target']:.2f} | {'yes' if t['value'] >= t['target'] else 'no'} |"
        )
    return [*out, ""]


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


def near_tables(results: dict[str, Any]) -> list[str]:
    """The near cache: adversarial trials at scale, memory under a flood (issue 11)."""
    out: list[str] = []
    adv = results.get("near_adversarial")
    if adv:
        out += [
            "### Near cache: a write returns in one process, another reads at once",
            "",
            f"`bench/near_adversarial.py`: {adv['trials_per_mode']:,} trials per mode, each on "
            "a throwaway redis-server. A trial is armed when the reader's lookup just before the "
            "write was served from its near cache; the read after the write must not be a hit "
            "from it (stale whether the bump got through or gave up) nor a Redis hit after a bump "
            "that got through.",
            "",
            "| Mode | trials | faults (while armed) | armed | **stale** | read after the write: "
            "near cache / Redis / unavailable | bumps that gave up | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for mode, r in adv["modes"].items():
            out.append(
                f"| {mode} | {r['trials']:,} | {r['faults']} ({r['armed_faults']}) | "
                f"{r['armed']:,} | **{r['stale']}** | {r['after_from_near']:,} / "
                f"{r['after_from_redis']:,} / {r['after_unavailable']:,} | "
                f"{r['bumps_gave_up']} | {r['seconds']:.1f} |"
            )
        out.append("")
    nm = results.get("near_memory")
    if nm:
        mib = 1024 * 1024
        out += [
            "### Near cache memory under a flood of distinct pages",
            "",
            "`bench/near_memory.py`: new pages with random query strings, each asked twice "
            "(stored, then a hit from the near cache, which then keeps the decoded page too): "
            "post pages, or a small page (one post's title). Counted: `NearCache.bytes`, after "
            "every page. Real: the deep `sys.getsizeof` of the entries and tag index (sampled "
            "every 5% of the flood), and what emptying a refilled near cache gave back under "
            "tracemalloc (2 rounds); ratios real / counted. Entries are pages and, for post pages, "
            "their template fragments (only pages keep a decoded copy).",
            "",
            "| Pages | bound | pages | entries when full (keeping a decoded page) | payload "
            "(median) | tags | counted "
            "per entry | max counted | pages leaving it over the bound | deep / counted (min / "
            "median / max) | tracemalloc freed / counted | RSS start / max |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for shape, r in nm.items():
            out.append(
                f"| {shape} | {r['bound']:,} | {r['pages']:,} | {r['entries_when_full']:,} "
                f"({r['entries_keeping_a_decoded_page']:,}) | "
                f"{r['payload_bytes_median']:,.0f} | {r['tags_per_entry_median']:.0f} | "
                f"{r['counted_per_entry_median']:,.0f} | {r['max_counted_bytes']:,} | "
                f"{r['pages_leaving_it_over_the_bound']} | "
                f"{_ratio_cells(r['deep_over_counted'])} | "
                f"{_ratio_cells(r['freed_over_counted'])} | "
                f"{r['rss']['start'] / mib:.1f} / {r['rss']['max'] / mib:.1f} MiB |"
            )
        inv = nm.get("post", {}).get("invalidations_remembered")
        if inv:
            out += [
                "",
                f"Bounded apart: the last invalidations (at most {inv['capacity']:,}, and at most "
                "a sixteenth of the bound, 64 KiB at least), remembered to decide whether an "
                "entry fetched meanwhile may be kept. Filled by "
                f"{inv['bumps']:,} bumps of the post pages' tag sets from another store "
                f"({inv['tags']:,} tags): {inv['deep_bytes'] / mib:.2f} MiB, "
                f"{inv['bytes_per_tag']:.0f} bytes per tag.",
            ]
        out.append("")
    return out


def edge_tables(results: dict[str, Any]) -> list[str]:
    """Issue 12: the front page through Varnish and nginx beside Django's hit; the purge lag."""
    from bench.edge import LABELS as EDGE_LABELS
    from bench.edge import VARIANTS as EDGE_VARIANTS

    ed = results.get("edge")
    if not ed:
        return []
    out = [
        "### The edge: the front page from Django, Varnish and nginx",
        "",
        f"One gunicorn ({ed['workers']} sync workers, the Redis store) with `EDGE` (keys for "
        "Varnish, the Varnish purger, publishing of `/` and `/post/`); varnishd with "
        "tests/edge/varnish.vcl and nginx (2 workers) with tests/edge/nginx.conf in front of "
        "it; the floors from a second gunicorn, freshcache off. wrk, 1 thread, "
        f"{ed['connections']} connections, a new connection per request unless keep-alive; "
        f"{ed['rounds']} round(s) x {ed['seconds_per_run']} s per variant, interleaved. "
        "Server CPU is that of the server's process group (wrk's and the kernel's share of "
        "connection setup is not in it).",
        "",
        "| Variant | req/s | p50 ms | p99 ms | x floor | server CPU ms/request | body bytes "
        "| errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in EDGE_VARIANTS:
        r = ed["variants"].get(v)
        if r:
            out.append(
                f"| {EDGE_LABELS[v]} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{r['vs_floor']:.2f} | {r['cpu_ms_per_request']:.3f} | {r['body_bytes']} | "
                f"{r['errors']} |"
            )
    out += [
        "",
        "| Requests/s ratio | whole run | median of rounds (lowest-highest) | target | met "
        "| server CPU per request, denominator / numerator |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for t in ed["ratios"]:
        a, _, b = t["ratio"].partition(" / ")
        low, high = t["round_range"]
        target = t["target"]
        met = "-" if target is None else ("yes" if t["value"] >= target else "no")
        out.append(
            f"| {EDGE_LABELS[a]} / {EDGE_LABELS[b]} | **{t['value']:.2f}** | "
            f"{t['round_median']:.2f} ({low:.2f}-{high:.2f}) | "
            f"{'-' if target is None else f'>= {target:.0f}'} | {met} | "
            f"{t['cpu_per_request_b_over_a']:.1f} |"
        )
    lag = ed.get("lag") or {}
    if lag:
        out += [
            "",
            "#### Purge lag (ms: p50 / p90 / p99 / max)",
            "",
            "A writer process updates the title of the newest post (on the front page), spaced "
            "20-80 ms after the previous write's new page was read; after each write returns it "
            "reads `/` through the edge in a loop until the new title shows. Until the new "
            "read: from the write's return to the end of that response. Until it began: the "
            "purge lag to within one poll (Varnish) or nothing (nginx: the file was already "
            "gone). That read: the response that showed it, a miss rendered by Django. "
            f"Varnish purger `SETTLE` {ed['settle']:.0f} s (the default).",
            "",
            "| Edge | writes | until the new read | until it began | that read (a miss) "
            "| before the write; after it |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for mode, r in lag.items():
            gone = "n/a"
            if "varnish_hit_before_write" in r:
                gone = (f"a Varnish hit before {r['varnish_hit_before_write']} of {r['writes']} "
                        f"writes; {r['timeouts']} never showed the new title in 30 s")
            if "gone_or_new_at_first_look" in r:
                gone = (f"the file there before {r['file_before_write']} of {r['writes']} "
                        f"writes; gone at the first look after the return "
                        f"({r['first_look']['p50']:.3f} ms after it, p50) "
                        f"{r['gone_or_new_at_first_look']} of {r['writes']}")
            out.append(
                f"| {mode} | {r['writes']} | {_dist4(r['until_new_read'])} | "
                f"{_dist4(r['until_that_read_began'])} | {_dist4(r['that_read'])} | {gone} |"
            )
    return [*out, ""]


def _dist4(d: dict[str, Any]) -> str:
    if not d.get("n"):
        return "n/a"
    return f"{d['p50']:.1f} / {d['p90']:.1f} / {d['p99']:.1f} / {d['max']:.1f}"


def _ratio_cells(r: dict[str, float]) -> str:
    return f"{r['min']:.2f} / {r['median']:.2f} / {r['max']:.2f}" if r else "n/a"


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
        panels = [("gunicorn, 2 sync workers", tp["variants"], VARIANTS)]
        if tp.get("hits"):
            floor = {"floor": tp["variants"]["floor"]}
            panels.append(("gunicorn, front pages only", {**tp["hits"]["variants"], **floor},
                           [*HITS_VARIANTS, "floor"]))
        if tp.get("asgi"):
            panels.append((f"{tp['asgi']['server']}, 2 workers", tp["asgi"]["variants"],
                           ASGI_VARIANTS))
            if tp["asgi"].get("hits"):
                floor = {"floor": tp["asgi"]["variants"]["floor"]}
                panels.append((f"{tp['asgi']['server']}, front pages only",
                               {**tp["asgi"]["hits"]["variants"], **floor},
                               [*ASGI_HITS_VARIANTS, "floor"]))
        fig, axes = plt.subplots(len(panels), 2, figsize=(12, 4.2 * len(panels)), squeeze=False)
        for (server, variants, order), (ax1, ax2) in zip(panels, axes, strict=True):
            _throughput_panel(ax1, ax2, server, variants, [v for v in order if v in variants])
        fig.suptitle(f"wrk, {tp['connections']} connections, {tp['rounds']} x "
                     f"{tp['seconds_per_run']} s per variant", fontsize=9)
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


#: Bar colours: no cache grey, Django red, freshcache blue (near cache darker), the floor green.
COLORS = {
    "nocache": "#999", "django": "#d62728", "fc-near": "#08306b", "fc-early": "#3f007d",
    "floor": "#2ca02c",
    "floor-page": "#74c476",
}


def _throughput_panel(
    ax1: Any, ax2: Any, server: str, variants: dict[str, Any], order: list[str]
) -> None:
    """Requests/s (left) and p50/p99 latency (right) of one server's variants."""
    labels = [textwrap.fill(variants[v]["label"], 16) for v in order]
    x = range(len(order))
    rps = [variants[v]["rps"] for v in order]
    ax1.bar(x, rps, color=[COLORS.get(v, "#1f77b4") for v in order])
    ax1.set_xticks(list(x), labels, fontsize=7)
    ax1.set_ylabel("requests/s")
    ax1.set_title(f"Throughput, {server} (higher is better)", fontsize=9)
    for i, value in enumerate(rps):
        ax1.text(i, value, f"{value:.0f}", ha="center", va="bottom", fontsize=8)
    ax2.bar([i - 0.2 for i in x], [variants[v]["p50_ms"] for v in order], 0.4, label="p50")
    ax2.bar([i + 0.2 for i in x], [variants[v]["p99_ms"] for v in order], 0.4, label="p99")
    ax2.set_yscale("log")
    ax2.set_xticks(list(x), labels, fontsize=7)
    ax2.set_ylabel("latency, ms (log)")
    ax2.set_title(f"Latency, {server} (lower is better)", fontsize=9)
    ax2.legend()


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
