"""Tables of the ``database://`` store. Nothing else in freshcache uses models."""

from __future__ import annotations

from django.db import models


class TagVersion(models.Model):
    """A tag's current version: the value of the global sequence at its last bump."""

    tag = models.CharField(max_length=255, primary_key=True)
    version = models.BigIntegerField()

    class Meta:
        db_table = "freshcache_tag"

    def __str__(self) -> str:
        return f"{self.tag}@{self.version}"


class Entry(models.Model):
    """A cached payload with the tag versions it was built from ("tag\\tversion" lines)."""

    key = models.CharField(max_length=64, primary_key=True)
    payload = models.BinaryField()
    versions = models.TextField()
    expires = models.FloatField(null=True)

    class Meta:
        db_table = "freshcache_entry"

    def __str__(self) -> str:
        return self.key


class Sequence(models.Model):
    """The global sequence on databases without native sequences (PostgreSQL uses one)."""

    name = models.CharField(max_length=20, primary_key=True)
    value = models.BigIntegerField(default=0)

    class Meta:
        db_table = "freshcache_sequence"

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class LogEntry(models.Model):
    """One committed write, waiting to be applied to the stores by a relay (see ``log/``).

    Rows come from database triggers (``source="trigger"``: the table, the keyed columns' names
    and their old and new values as JSON arrays, ``NULL`` when there were too many rows) or from
    freshcache itself (``source="django"``: the tags, one per line). A relay deletes a row once
    every shared store has applied it.
    """

    id = models.BigAutoField(primary_key=True)
    created = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=16)
    tbl = models.CharField(max_length=255, blank=True, default="")
    op = models.CharField(max_length=16, blank=True, default="")
    columns = models.TextField(blank=True, default="")
    old = models.JSONField(null=True)
    new = models.JSONField(null=True)
    tags = models.TextField(blank=True, default="")

    class Meta:
        db_table = "freshcache_log"

    def __str__(self) -> str:
        return f"#{self.id} {self.source} {self.op} {self.tbl}".strip()


class Lease(models.Model):
    """Who computes an entry right now (single flight): a token until ``expires``."""

    key = models.CharField(max_length=64, primary_key=True)
    token = models.CharField(max_length=32)
    #: Seconds since the epoch (``time.time()``) when the lease ends unless released before.
    expires = models.FloatField()

    class Meta:
        db_table = "freshcache_lease"

    def __str__(self) -> str:
        return self.key
