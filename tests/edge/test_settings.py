"""``FRESHCACHE["EDGE"]``: what is read, and the whole error message of every mistake."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Error
from django.test import override_settings

from freshcache.checks import check_settings
from freshcache.conf import EdgeSettings, get_settings, read
from tests.edge import examples
from tests.test_checks import EDGE_HINT


def errors(edge: Any) -> list[Any]:
    with override_settings(FRESHCACHE={"EDGE": edge}):
        return check_settings()


def E(message: str) -> Error:
    return Error(message, hint=EDGE_HINT, id="freshcache.E022")


def test_off_by_default() -> None:
    assert read({})[0].edge == EdgeSettings(keys=(), send_keys=True, max_header_bytes=None)
    assert not read({})[0].edge.enabled
    assert read({"EDGE": None})[0].edge == EdgeSettings()


@pytest.mark.parametrize("name", sorted(examples.ALL))
def test_every_example_of_the_guide_is_valid(name: str) -> None:
    settings, problems = read(examples.ALL[name])
    assert problems == ()
    assert settings.enabled
    # Keys for edges, or (PUBLISHED) files for nginx and no key headers.
    assert settings.edge.enabled or (settings.edge.publish is not None and name == "PUBLISHED")


def test_values_are_read() -> None:
    edge = read(examples.VARNISH_AND_CLOUDFLARE)[0].edge
    assert edge == EdgeSettings(keys=("varnish", "cloudflare"), max_header_bytes=4096)
    assert read({"EDGE": {"KEYS": ("fastly", "fastly")}})[0].edge.keys == ("fastly",)
    assert read(examples.LOCAL)[0].edge.send_keys is False


BAD = [
    ("varnish", ["FRESHCACHE['EDGE'] must be a dict such as {'KEYS': ['varnish']}, not the "
                 "string 'varnish'"]),
    ({"KEY": ["varnish"]}, ["FRESHCACHE['EDGE'] has an unknown key 'KEY' (did you mean 'KEYS'?); "
                            "it understands KEYS, MAX_HEADER_BYTES, PUBLISH, PURGERS, SEND_KEYS"]),
    ({"KEYS": "varnish"}, ["FRESHCACHE['EDGE']['KEYS'] must be a list of edge names (akamai, "
                           "cloudflare, fastly, varnish), not the string 'varnish' (write "
                           "['varnish'])"]),
    ({"KEYS": ["Fastly", "cdn", 3]}, [
        "FRESHCACHE['EDGE']['KEYS'] has 'Fastly', which is not an edge freshcache knows (akamai, "
        "cloudflare, fastly, varnish) (did you mean 'fastly'?)",
        "FRESHCACHE['EDGE']['KEYS'] has 'cdn', which is not an edge freshcache knows (akamai, "
        "cloudflare, fastly, varnish)",
        "FRESHCACHE['EDGE']['KEYS'] has 3, which is not an edge freshcache knows (akamai, "
        "cloudflare, fastly, varnish)",
    ]),
    ({"KEYS": ["varnish"], "SEND_KEYS": "False"}, [
        "FRESHCACHE['EDGE']['SEND_KEYS'] must be True or False, not the string 'False' (write it "
        "without quotes)"
    ]),
    ({"KEYS": ["varnish"], "MAX_HEADER_BYTES": "8k"}, [
        "FRESHCACHE['EDGE']['MAX_HEADER_BYTES'] must be a positive whole number of bytes, or "
        "None, not the string '8k'"
    ]),
    ({"KEYS": ["varnish"], "MAX_HEADER_BYTES": 0}, [
        "FRESHCACHE['EDGE']['MAX_HEADER_BYTES'] must be a positive whole number of bytes, or "
        "None, not 0"
    ]),
]  # fmt: skip


@pytest.mark.parametrize(("edge", "messages"), BAD)
def test_each_mistake_is_an_error_with_the_fix(edge: Any, messages: list[str]) -> None:
    assert errors(edge) == [E(m) for m in messages]


def test_a_mistake_turns_caching_off_and_no_edge_is_labelled() -> None:
    with override_settings(FRESHCACHE={"EDGE": {"KEYS": ["varnsh"]}}):
        assert not get_settings().enabled
        assert not get_settings().edge.enabled


V = "freshcache.edge.purgers.Varnish"
URLS = ["http://127.0.0.1:6081/"]

BAD_PURGERS = [
    ({"BACKEND": V}, ["FRESHCACHE['EDGE']['PURGERS'][0]['URLS'] is required",
                      "FRESHCACHE['EDGE']['PURGERS'][0]['URLS'] must be a non-empty list of "
                      "http:// or https:// URLs, not []"]),
    ({"BACKEND": V, "URLS": "http://127.0.0.1:6081/"}, [
        "FRESHCACHE['EDGE']['PURGERS'][0]['URLS'] must be a non-empty list of http:// or "
        "https:// URLs, not 'http://127.0.0.1:6081/'"]),
    ({"BACKEND": V, "URL": URLS}, [
        "FRESHCACHE['EDGE']['PURGERS'][0] has an unknown key 'URL' (did you mean 'URLS'?); "
        "Varnish understands BACKEND, BACKOFF, BATCH, BURST, HEADER, MAX_BACKOFF, NAME, RATE, "
        "SETTLE, TIMEOUT, URLS",
        "FRESHCACHE['EDGE']['PURGERS'][0]['URLS'] is required",
        "FRESHCACHE['EDGE']['PURGERS'][0]['URLS'] must be a non-empty list of http:// or "
        "https:// URLs, not []"]),
    ({"BACKEND": "freshcache.edge.purgers.Akamai"}, [
        "FRESHCACHE['EDGE']['PURGERS'][0]['BACKEND'] 'freshcache.edge.purgers.Akamai' cannot be "
        "imported: Module \"freshcache.edge.purgers\" does not define a \"Akamai\" "
        "attribute/class"]),
    ({"BACKEND": "varnish"}, [
        "FRESHCACHE['EDGE']['PURGERS'][0]['BACKEND'] must be a dotted path such as "
        "'freshcache.edge.purgers.Varnish', not 'varnish'"]),
    ({"BACKEND": "freshcache.edge.EDGES"}, [
        "FRESHCACHE['EDGE']['PURGERS'][0]['BACKEND'] 'freshcache.edge.EDGES' is not a "
        "freshcache.edge.purgers.Purger"]),
    ({"BACKEND": "freshcache.edge.purgers.Fastly", "SERVICE_ID": "s", "API_TOKEN": "t",
      "BATCH": 500}, [
        "FRESHCACHE['EDGE']['PURGERS'][0]['BATCH'] is 500, more than Fastly's API accepts in "
        "one request (256)"]),
    ({"BACKEND": V, "URLS": URLS, "RATE": "10/s", "TIMEOUT": 0, "SETTLE": -1}, [
        "FRESHCACHE['EDGE']['PURGERS'][0]['RATE'] must be a positive number of requests per "
        "second, or None, not '10/s'",
        "FRESHCACHE['EDGE']['PURGERS'][0]['TIMEOUT'] must be a positive number of seconds, not 0",
        "FRESHCACHE['EDGE']['PURGERS'][0]['SETTLE'] must be a positive number of seconds, or "
        "None, not -1"]),
    ("varnish", ["FRESHCACHE['EDGE']['PURGERS'][0] must be a dict such as {'BACKEND': "
                 "'freshcache.edge.purgers.Varnish', 'URLS': ['http://127.0.0.1:6081/']}, not "
                 "'varnish'"]),
]  # fmt: skip


@pytest.mark.parametrize(("purger", "messages"), BAD_PURGERS)
def test_each_purger_mistake_is_an_error_with_the_fix(purger: Any, messages: list[str]) -> None:
    assert errors({"KEYS": ["varnish"], "PURGERS": [purger]}) == [E(m) for m in messages]


def test_two_purgers_need_two_names() -> None:
    one = {"BACKEND": V, "URLS": URLS}
    assert errors({"KEYS": ["varnish"], "PURGERS": [one, one]}) == [E(
        "FRESHCACHE['EDGE']['PURGERS'][1] is named 'varnish' like an earlier purger: give each "
        "its own 'NAME'")]  # fmt: skip
    found = errors({"KEYS": ["varnish"], "PURGERS": [one, {**one, "NAME": "second"}]})
    assert [e for e in found if e.id == "freshcache.E022"] == []


def test_purgers_are_read_with_the_backends_defaults() -> None:
    (purger,) = read(examples.VARNISH_PURGED)[0].edge.purgers
    assert (purger.name, purger.rate, purger.batch, purger.settle) == ("varnish", None, 1000, 2.0)
    assert dict(purger.options) == {"URLS": ("http://127.0.0.1:6081/",)}
    (purger,) = read(examples.CLOUDFLARE_PURGED)[0].edge.purgers
    assert (purger.name, purger.rate, purger.burst, purger.batch) == ("cloudflare", 5, 25, 100)
    (purger,) = read(examples.FASTLY_PURGED)[0].edge.purgers
    assert (purger.name, purger.rate, purger.burst, purger.batch) == ("fastly", 10.0, 20, 256)
