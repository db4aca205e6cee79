"""ASGI isolation (reliability A14): concurrent async requests never share tags or responses."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from freshcache.invalidation import invalidate_tags
from tests.http.conftest import state


@pytest.mark.asyncio
async def test_100_concurrent_async_pages_keep_their_own_tags(page_store: None) -> None:
    client = AsyncClient()
    pages = range(100)
    first = await asyncio.gather(*(client.get(f"/t/async/{n}/") for n in pages))
    assert [r.content for r in first] == [f"async page {n}".encode() for n in pages]
    again = await asyncio.gather(*(client.get(f"/t/async/{n}/") for n in pages))
    assert {state(r) for r in again} == {"hit"}
    assert [r.content for r in again] == [f"async page {n}".encode() for n in pages]
    await sync_to_async(invalidate_tags)(["http:async:7"])
    after = await asyncio.gather(*(client.get(f"/t/async/{n}/") for n in pages))
    assert [n for n, r in zip(pages, after, strict=True) if state(r) != "hit"] == [7]
