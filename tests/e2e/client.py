"""A tiny HTTP client for the end-to-end tests: fresh connections, forms parsed like a browser."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import requests

TIMEOUT = 15
PID_RE = re.compile(r'<span class="pid">(\d+)</span>')
TAGS_RE = re.compile(r'<details class="cache-tags">.*?<code>(.*?)</code>', re.S)


@dataclass
class Got:
    url: str
    status: int
    state: str  # hit, miss, bypass, or "" without X-Freshcache
    headers: dict[str, str]
    text: str

    @property
    def pid(self) -> str | None:
        match = PID_RE.search(self.text)
        return match.group(1) if match else None

    @property
    def tags(self) -> list[str]:
        match = TAGS_RE.search(self.text)
        return match.group(1).split() if match else []


def get(url: str, headers: dict[str, str] | None = None) -> Got:
    """GET over a new connection (so a multi-worker server may answer from any worker)."""
    sent = {"Connection": "close", **(headers or {})}
    response = requests.get(url, headers=sent, timeout=TIMEOUT, allow_redirects=False)
    state = response.headers.get("X-Freshcache", "").split(";")[0].strip()
    return Got(url, response.status_code, state, dict(response.headers), response.text)


def get_many(urls: list[str], concurrency: int = 8) -> list[Got]:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(get, urls))


class FormParser(HTMLParser):
    """The fields a browser would submit for the form with ``id`` (or the first form)."""

    def __init__(self, form_id: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.done = False
        self.fields: list[tuple[str, str]] = []
        self._textarea: str | None = None
        self._text: list[str] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._multiple = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        wanted = self.form_id is None or a.get("id") == self.form_id
        if tag == "form" and not self.done and wanted:
            self.inside = True
        if not self.inside:
            return
        name = a.get("name", "")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in {"submit", "button", "image", "file", "reset"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in a:
                return
            self.fields.append((name, a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []
        elif tag == "select" and name:
            self._select, self._options, self._multiple = name, [], "multiple" in a
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            self.fields.append((self._textarea, text[1:] if text.startswith("\n") else text))
            self._textarea = None
        elif tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._options if selected]
            if not chosen and not self._multiple and self._options:
                chosen = [self._options[0][0]]
            self.fields += [(self._select, v) for v in chosen]
            self._select = None
        elif tag == "form" and self.inside:
            self.inside, self.done = False, True


def form_fields(html: str, form_id: str | None = None) -> list[tuple[str, str]]:
    parser = FormParser(form_id)
    parser.feed(html)
    return parser.fields


def replace_field(fields: list[tuple[str, str]], name: str, value: Any) -> list[tuple[str, str]]:
    assert any(k == name for k, _ in fields), f"no field {name!r} in the form"
    return [(k, str(value) if k == name else v) for k, v in fields]
