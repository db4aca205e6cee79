"""The freshness checker: readers fetch post pages over HTTP while a writer changes them.

Reader processes loop over a few target posts' pages (a new connection per request, no cookies),
recording for every read when it started and ended (``time.monotonic_ns()``, system-wide on
Linux, so comparable across processes) and every marker string on the page. One writer process
cycles through the write paths, each write carrying a unique marker, and records when it was
invoked and when it returned:

  form      a comment posted through the blog's form (HTTP POST with the CSRF token)
  admin     a comment's body edited in the Django admin (logged-in HTTP POST)
  update    ``Post.objects.filter(pk=...).update(title=...)``
  bulk      ``Comment.objects.bulk_create([...])``
  m2m       ``post.tags.add(tag)`` (tag named with the marker, created beforehand)
  raw       ``UPDATE blog_comment SET body = ...`` through ``connection.cursor()``
  delete    ``comment.delete()`` of a comment the writer created
  outside   through a psycopg connection of its own, not Django's (as ``psql`` or a cron job in
            another language would): one transaction that edits the body of one of the writer's
            comments and inserts a new comment; only the database triggers and the relays of
            the server's workers see it

A read is stale if it started after a write returned and it lacks that write's new marker, or
still shows a marker the write replaced or deleted (unless a later write that removes the
marker had already been invoked before the read ended).

An outside write has no bump of its own: its pages are fresh once a relay applied its log rows,
milliseconds after the commit (docs/outside-writes.md). So after each one the writer polls the
log every millisecond until the relays have applied (and deleted) its rows, and stale reads after
outside writes are split: started before that (the stated window) or after (a lost invalidation).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import PG_NAME, PYTHON, ROOT, django_env, log, manage, percentile, psql, servers

PATHS = ["form", "bulk", "admin", "update", "m2m", "raw", "delete", "outside"]
TARGET_POSTS = 4
#: Seconds without writes before and after each outside write. Any write made through Django
#: invalidates every post page (they share the tag cloud and post lists), so without a quiet
#: time around it a lost outside invalidation would be hidden by the next ORM write.
OUTSIDE_QUIET = (0.25, 0.4)
READERS = 4
#: The page the readers read: the blog's post page; under ``fc-early`` the same post's article
#: and comments on a page with nothing per request (``bench/site/views.py: plain_post``), which
#: early hits may answer (the post page never: its view counts each visit, and it has a form).
PAGE = "/post/{slug}/"
READ_PATHS = {"fc-early": "/plain/post/{slug}/"}
MARKER = re.compile(rb"fcmk[0-9a-f]{6}x[0-9]{5}q")


# -- reader ---------------------------------------------------------------------------------


def reader(
    base: str,
    slugs: list[str],
    seconds: float,
    out: str,
    path: str = "/post/{slug}/",
    max_reads: int = 200_000,
) -> None:
    host, _, port = base.removeprefix("http://").partition(":")
    deadline = time.monotonic() + seconds
    rows: list[list[Any]] = []
    n = int.from_bytes(os.urandom(2), "big")
    while time.monotonic() < deadline and len(rows) < max_reads:
        slug = slugs[n % len(slugs)]
        n += 1
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        t0 = time.monotonic_ns()
        try:
            conn.request("GET", path.format(slug=slug))
            response = conn.getresponse()
            body = response.read()
            status, state = response.status, response.getheader("X-Freshcache", "")
            near_hits = response.getheader("X-Bench-Near-Hits")
            early = response.getheader("X-Bench-Early") == "1"
        except OSError as exc:
            body, status, state, near_hits, early = b"", 0, f"error {exc}", None, False
        finally:
            conn.close()
        t1 = time.monotonic_ns()
        markers = sorted({m.decode() for m in MARKER.findall(body)})
        rows.append(
            [t0, t1, slug, status, state.split(";")[0], markers, near_hits, state, early]
        )
    Path(out).write_text(json.dumps(rows))


# -- writer ---------------------------------------------------------------------------------


class Writer:
    def __init__(self, base: str, slugs: list[str], run_id: str) -> None:
        import requests

        from blog.models import Post, Tag

        self.base = base
        self.run_id = run_id
        self.seq = 0
        self.posts = {slug: Post.objects.get(slug=slug) for slug in slugs}
        self.titles: dict[str, str | None] = dict.fromkeys(slugs)
        #: comment pk -> (slug, the marker it shows now)
        self.comments: dict[int, tuple[str, str]] = {}
        self.tags: list[Any] = []
        self.writes: list[dict[str, Any]] = []
        self._outside: Any = None
        self.anon = requests.Session()
        self.anon.get(base + "/admin/login/", timeout=30)
        self.admin = requests.Session()
        self.admin.get(base + "/admin/login/", timeout=30)
        response = self.admin.post(
            base + "/admin/login/",
            data={
                "username": "admin",
                "password": "admin",
                "csrfmiddlewaretoken": self.admin.cookies["csrftoken"],
                "next": "/admin/",
            },
            allow_redirects=False,
            timeout=30,
        )
        if response.status_code != 302:
            raise RuntimeError(f"admin login failed: {response.status_code}")
        self.Tag = Tag

    def marker(self) -> str:
        self.seq += 1
        return f"fcmk{self.run_id}x{self.seq:05d}q"

    def prepare_tags(self, count: int) -> None:
        """Tags for the m2m writes, created before any read is checked."""
        names = [self.marker() for _ in range(count)]
        self.tags = list(self.Tag.objects.bulk_create([self.Tag(name=n, slug=n) for n in names]))

    def _comment_on(self, slug: str, path: str) -> int | None:
        """admin edits the newest of the writer's comments, raw the one before, delete the
        oldest (once there are three), so each write stays visible for a while."""
        mine = sorted(pk for pk, (s, _) in self.comments.items() if s == slug)
        if path == "admin":
            return mine[-1] if mine else None
        if path == "raw":
            return mine[-2] if len(mine) >= 2 else None
        if path == "outside":
            return mine[-3] if len(mine) >= 3 else None
        return mine[0] if len(mine) >= 3 else None

    def outside(self) -> Any:
        """A psycopg connection of the writer's own, outside Django (autocommit)."""
        if self._outside is None:
            import psycopg
            from django.db import connection

            params = connection.get_connection_params()
            for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
                params.pop(key, None)
            self._outside = psycopg.connect(**params, autocommit=True)
        return self._outside

    def write_outside(
        self, slug: str, post: Any, new: str
    ) -> tuple[list[str], list[str], int]:
        """Edit one of the writer's comments and insert one, in one transaction outside
        Django; return the markers added and removed, and the id of the transaction's last
        invalidation-log row (written by the triggers)."""
        conn = self.outside()
        pk = self._comment_on(slug, "outside")
        inserted = self.marker()
        with conn.transaction():
            if pk is not None:
                conn.execute("UPDATE blog_comment SET body = %s WHERE id = %s",
                             [f"outside {new}", pk])
            (new_pk,) = conn.execute(
                "INSERT INTO blog_comment (post_id, author_name, body, created_at, approved) "
                "VALUES (%s, 'outside', %s, now(), true) RETURNING id",
                [post.pk, f"outside {inserted}"],
            ).fetchone()
            (last_row,) = conn.execute("SELECT max(id) FROM freshcache_log").fetchone()
        removes = []
        if pk is not None:
            removes.append(self.comments[pk][1])
            self.comments[pk] = (slug, new)
        self.comments[int(new_pk)] = (slug, inserted)
        return ([new] if pk is not None else []) + [inserted], removes, int(last_row)

    def applied(self, last_row: int, within: float) -> int | None:
        """When the relays had applied the log rows up to ``last_row`` (a relay deletes a row
        once applied to every store): polled every millisecond for ``within`` seconds at most;
        ``None`` if not by then (the control run, with no relay)."""
        conn = self.outside()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = conn.execute(
                "SELECT 1 FROM freshcache_log WHERE id <= %s LIMIT 1", [last_row]
            ).fetchone()
            if found is None:
                return time.monotonic_ns()
            time.sleep(0.001)
        return None

    def write(self, path: str, slug: str) -> dict[str, Any] | None:
        from django.db import connection

        from blog.models import Comment, Post

        post = self.posts[slug]
        new = self.marker()
        adds, removes = [new], []
        t_applied = None
        t_invoke = time.monotonic_ns()
        if path == "form":
            response = self.anon.post(
                f"{self.base}/post/{slug}/",
                data={
                    "author_name": "checker",
                    "body": f"comment {new}",
                    "csrfmiddlewaretoken": self.anon.cookies["csrftoken"],
                },
                allow_redirects=False,
                timeout=30,
            )
            t_ack = time.monotonic_ns()
            match = re.search(r"#comment-(\d+)$", response.headers.get("Location", ""))
            if response.status_code != 302 or not match:
                raise RuntimeError(f"comment form answered {response.status_code}")
            self.comments[int(match.group(1))] = (slug, new)
        elif path == "bulk":
            (comment,) = Comment.objects.bulk_create(
                [Comment(post=post, author_name="bulk", body=f"bulk {new}")]
            )
            t_ack = time.monotonic_ns()
            self.comments[comment.pk] = (slug, new)
        elif path == "update":
            Post.objects.filter(pk=post.pk).update(title=f"Post {new}")
            t_ack = time.monotonic_ns()
            if self.titles[slug]:
                removes.append(self.titles[slug])
            self.titles[slug] = new
        elif path == "outside":
            adds, removes, last_row = self.write_outside(slug, post, new)
            t_ack = time.monotonic_ns()
            # Within the quiet time after the write: the stale reads it may cause are told
            # apart by whether they started before its invalidation was applied.
            t_applied = self.applied(last_row, OUTSIDE_QUIET[1])
        elif path == "m2m":
            if not self.tags:
                return None
            tag = self.tags.pop()
            post.tags.add(tag)
            t_ack = time.monotonic_ns()
            adds = [tag.name]
        else:
            pk = self._comment_on(slug, path)
            if pk is None:
                return None
            old = self.comments[pk][1]
            removes.append(old)
            if path == "admin":
                response = self.admin.post(
                    f"{self.base}/admin/blog/comment/{pk}/change/",
                    data={
                        "post": str(post.pk),
                        "author_name": "admin",
                        "body": f"edited {new}",
                        "approved": "on",
                        "csrfmiddlewaretoken": self.admin.cookies["csrftoken"],
                        "_save": "Save",
                    },
                    allow_redirects=False,
                    timeout=30,
                )
                t_ack = time.monotonic_ns()
                if response.status_code != 302:
                    raise RuntimeError(f"admin edit answered {response.status_code}")
                # The admin redirects (302) when it does not find the object too: with reads
                # sent to a replica that is behind, it may not. A write that did not happen
                # is an error of the writer, not a stale read.
                saved = Comment.objects.using("default").filter(pk=pk).values_list("body")
                if [(f"edited {new}",)] != list(saved):
                    raise RuntimeError(f"admin edit answered 302 without saving: "
                                       f"{response.headers.get('Location')}")
                self.comments[pk] = (slug, new)
            elif path == "raw":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "UPDATE blog_comment SET body = %s WHERE id = %s", [f"raw {new}", pk]
                    )
                t_ack = time.monotonic_ns()
                self.comments[pk] = (slug, new)
            else:  # delete
                Comment.objects.get(pk=pk).delete()
                t_ack = time.monotonic_ns()
                del self.comments[pk]
                adds = []
        record = {
            "path": path, "slug": slug, "t_invoke": t_invoke, "t_ack": t_ack,
            "adds": adds, "removes": removes, "t_applied": t_applied,
        }
        self.writes.append(record)
        return record


def writer(variant: str, base: str, slugs: list[str], seconds: float, out: str) -> None:
    from bench.common import setup_django

    setup_django(variant)
    w = Writer(base, slugs, secrets.token_hex(3))
    w.prepare_tags(400)
    Path(out + ".ready").write_text("ready")
    deadline = time.monotonic() + seconds
    errors: list[str] = []
    n = 0
    while time.monotonic() < deadline and n < 5000:
        path = PATHS[n % len(PATHS)]
        slug = slugs[(n // len(PATHS)) % len(slugs)]
        n += 1
        if path == "outside":
            time.sleep(OUTSIDE_QUIET[0])
        started = time.monotonic()
        try:
            w.write(path, slug)
        except Exception as exc:  # report, keep going: one failed write is not a stale read
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
        if path == "outside":  # the quiet time includes the wait for the relays
            time.sleep(max(0.0, OUTSIDE_QUIET[1] - (time.monotonic() - started)))
        else:
            time.sleep(0.03)
    Path(out).write_text(json.dumps({"writes": w.writes, "errors": errors[:20],
                                     "error_count": len(errors)}))


# -- the check ------------------------------------------------------------------------------


def _count(states: Any) -> dict[str, int]:
    counted: dict[str, int] = {}
    for state in states:
        kind = (state or "none").split()[0].strip(";,")
        counted[kind] = counted.get(kind, 0) + 1
    return counted


def _reasons(headers: Any) -> dict[str, int]:
    counted: dict[str, int] = {}
    for header in headers:
        if header.startswith("bypass"):
            reason = re.sub(r"\d+", "N", header.partition(";")[2].strip())[:120] or "(none)"
            counted[reason] = counted.get(reason, 0) + 1
    return dict(sorted(counted.items(), key=lambda kv: -kv[1])[:10])


def check(reads: list[list[Any]], writes: list[dict[str, Any]]) -> dict[str, Any]:
    """Count stale reads per write path (see the module docstring for the rule)."""
    removed_at: dict[str, int] = {}  # marker -> invocation time of the write that removed it
    for w in writes:
        for m in w["removes"]:
            removed_at[m] = min(removed_at.get(m, w["t_invoke"]), w["t_invoke"])
    by_slug: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for w in writes:
        by_slug[w["slug"]].append(w)
    for ws in by_slug.values():
        ws.sort(key=lambda w: w["t_ack"])
    stale_by_path: dict[str, int] = dict.fromkeys(PATHS, 0)
    checks_by_path: dict[str, int] = dict.fromkeys(PATHS, 0)
    checked = stale = 0
    stale_by_state: dict[str, int] = {}
    max_staleness_ns = 0
    examples: list[dict[str, Any]] = []
    #: Stale reads after outside writes, by whether they started before the relays had applied
    #: the write (the window docs/outside-writes.md states) or after (a lost invalidation).
    outside = {"before_applied": 0, "after_applied": 0, "not_applied": 0}
    for t0, t1, slug, status, state, markers, near_hits, *_ in reads:
        if status != 200:
            continue
        found = set(markers)
        relevant = [w for w in by_slug.get(slug, []) if w["t_ack"] < t0]
        if not relevant:
            continue
        checked += 1
        bad_paths = set()
        worst = 0
        outside_when = set()
        for w in relevant:
            checks_by_path[w["path"]] += 1
            missing = [m for m in w["adds"] if m not in found and removed_at.get(m, t1 + 1) > t1]
            lingering = [m for m in w["removes"] if m in found]
            if missing or lingering:
                bad_paths.add(w["path"])
                worst = max(worst, t0 - w["t_ack"])
                applied = w.get("t_applied")
                if w["path"] == "outside":
                    outside_when.add("not_applied" if applied is None else
                                     "before_applied" if t0 < applied else "after_applied")
                if len(examples) < int(os.environ.get("BENCH_EXAMPLES", "5")):
                    examples.append({"path": w["path"], "slug": slug, "missing": missing,
                                     "lingering": lingering,
                                     "ms_after_ack": (t0 - w["t_ack"]) / 1e6,
                                     "applied_ms_after_ack":
                                         None if applied is None else (applied - w["t_ack"]) / 1e6,
                                     "state": state, "near_hits": near_hits})
        if bad_paths:
            stale += 1
            # By what served it: a read replica that is behind makes misses stale without any
            # cache (bench/scaled.py); only a stale hit is the cache's.
            kind = (state or "none").split()[0].strip(";,")
            stale_by_state[kind] = stale_by_state.get(kind, 0) + 1
            max_staleness_ns = max(max_staleness_ns, worst)
            for path in bad_paths:
                stale_by_path[path] += 1
            for when in ("after_applied", "not_applied", "before_applied"):
                if when in outside_when:  # the worst, if several outside writes are missed
                    outside[when] += 1
                    break
    lags = [(w["t_applied"] - w["t_ack"]) / 1e6 for w in writes
            if w["path"] == "outside" and w.get("t_applied") is not None]
    return {
        "reads": len(reads),
        "reads_ok": sum(1 for r in reads if r[3] == 200),
        "reads_checked": checked,
        "stale_reads": stale,
        "stale_by_path": stale_by_path,
        "stale_by_state": stale_by_state,
        "reads_by_state": _count(r[4] for r in reads if r[3] == 200),
        # Why pages were not served from the cache (bypasses, from the X-Freshcache header).
        "bypass_reasons": _reasons(r[7] for r in reads if len(r) > 7 and r[3] == 200),
        "checks_by_path": checks_by_path,
        "max_staleness_ms": max_staleness_ns / 1e6,
        "hits": sum(1 for r in reads if r[4] == "hit"),
        # fc-near only (bench/site/near_probe.py): hits its near cache served.
        "near_hits": sum(1 for r in reads if r[4] == "hit" and r[6] not in (None, "0")),
        # fc-early only: hits answered before the middleware (bench/site/near_probe.py).
        "early_hits": sum(1 for r in reads if len(r) > 8 and r[8]),
        "examples": examples,
        "outside_stale": outside,
        # When the relays had applied an outside write, ms after its commit returned.
        "outside_applied_ms": {
            "n": len(lags), "not_applied": sum(
                1 for w in writes if w["path"] == "outside" and w.get("t_applied") is None
            ),
            "p50": percentile(lags, 50), "p99": percentile(lags, 99),
            "max": max(lags, default=float("nan")),
        },
    }


def run_variant(
    variant: str, seconds: float, workdir: Path, *, relays: bool = True
) -> dict[str, Any]:
    """One checker run. ``relays=False`` is the control: no process applies the invalidation
    log, so the outside writes must show up as stale reads (and only they)."""
    slugs = psql(f"SELECT slug FROM blog_post ORDER BY id LIMIT {TARGET_POSTS}", PG_NAME).split()
    procs: list[subprocess.Popen[bytes]] = []
    extra = {} if relays else {"BENCH_FRESHCACHE": json.dumps({"RELAY": False})}
    env = django_env(variant, **extra)
    me = [PYTHON, "-m", "bench.freshness"]
    with servers([variant], env={"BENCH_HEADER": "1", **extra}) as running:
        base = running[variant].url
        try:
            writes_out = workdir / f"{variant}-writes.json"
            writer_proc = subprocess.Popen(
                [*me, "writer", variant, base, ",".join(slugs), str(seconds), str(writes_out)],
                cwd=ROOT, env=env,
            )
            procs.append(writer_proc)
            deadline = time.monotonic() + 60
            while not Path(str(writes_out) + ".ready").exists():
                if writer_proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the freshness writer did not start")
                time.sleep(0.1)
            for n in range(READERS):
                procs.append(subprocess.Popen(
                    [*me, "reader", base, ",".join(slugs), str(seconds + 1),
                     str(workdir / f"{variant}-reads-{n}.json"), READ_PATHS.get(variant, PAGE)],
                    cwd=ROOT, env=env,
                ))
            for proc in procs:
                proc.wait(timeout=seconds + 120)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    if not relays:  # apply what the control left in the log, for whatever runs next
        manage(variant, "freshcache", "relay", "--once")
    written = json.loads(writes_out.read_text())
    reads: list[list[Any]] = []
    for n in range(READERS):
        reads += json.loads((workdir / f"{variant}-reads-{n}.json").read_text())
    result = check(reads, written["writes"])
    result["writes"] = len(written["writes"])
    result["writes_by_path"] = {
        p: sum(1 for w in written["writes"] if w["path"] == p) for p in PATHS
    }
    result["write_errors"] = written["error_count"]
    result["write_error_examples"] = written["errors"]
    result["seconds"] = seconds
    result["relays"] = relays
    log(f"freshness {variant}{'' if relays else ' (relays off)'}: "
        f"{result['reads_checked']} reads checked, "
        f"{result['stale_reads']} stale, {result['writes']} writes, "
        f"{result['hits']} hits"
        + (f" ({result['near_hits']} from the near cache)" if result["near_hits"] else "")
        + (f" ({result['early_hits']} early)" if result["early_hits"] else "")
        + f", max staleness {result['max_staleness_ms']:.0f} ms; outside stale reads that "
        f"started before / after the relays had applied the write: "
        f"{result['outside_stale']['before_applied']} / {result['outside_stale']['after_applied']}")
    return result


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "reader":
        reader(sys.argv[2], sys.argv[3].split(","), float(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif role == "writer":
        writer(sys.argv[2], sys.argv[3], sys.argv[4].split(","), float(sys.argv[5]), sys.argv[6])
    else:
        raise SystemExit(f"unknown role {role!r}")
