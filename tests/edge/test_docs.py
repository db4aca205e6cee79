"""docs/edge.md shows exactly the configurations the tests run: the settings examples of
tests/edge/examples.py and the VCL of tests/edge/varnish.vcl; the reference pages list EDGE."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from freshcache.edge import edge_key
from tests.edge import examples

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "edge.md").read_text()


def test_every_settings_example_of_the_guide_is_one_the_tests_run() -> None:
    pattern = r"```python\n(?:#[^\n]*\n)*FRESHCACHE = (\{.*?\})\n```"
    shown = [ast.literal_eval(block) for block in re.findall(pattern, GUIDE, re.S)]
    assert shown, "the guide's settings blocks moved"
    assert all(raw in examples.ALL.values() for raw in shown)
    assert all(raw in shown for raw in examples.ALL.values())


def test_the_guides_vcl_is_the_one_test_varnish_runs() -> None:
    block = re.search(r"```vcl\n(.*?)```", GUIDE, re.S)
    assert block is not None
    assert block.group(1) == (Path(__file__).with_name("varnish.vcl")).read_text()


def test_the_guides_key_table_is_what_edge_key_gives() -> None:
    table = GUIDE.split("| tag | key |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|$", table, re.M)
    assert len(rows) == 4
    assert all(edge_key(tag) == key for tag, key in rows)


def test_the_reference_pages_list_the_setting_and_its_check() -> None:
    assert "| `EDGE` | `{}` |" in (ROOT / "docs" / "settings.md").read_text()
    assert "| `freshcache.E022` | Error |" in (ROOT / "docs" / "checks.md").read_text()


def test_the_guides_nginx_server_block_is_the_one_test_publish_runs() -> None:
    block = re.search(r"```nginx\n(.*?)```", GUIDE, re.S)
    assert block is not None
    assert block.group(1) == (Path(__file__).with_name("nginx.conf")).read_text()
