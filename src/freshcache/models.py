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


class PurgeKey(models.Model):
    """An edge key one purger must still purge (``edge/queue.py``; docs/edge.md, "Purgers").

    Written by the relay in the transaction that deletes the log rows it stands for, deleted by
    a purge worker once the edge answered success, and only if ``version`` is still the one the
    worker sent (a newer invalidation of the key arrived meanwhile: it is sent again). Times are
    seconds since the epoch (``time.time()`` of the process that wrote them).
    """

    id = models.BigAutoField(primary_key=True)
    purger = models.CharField(max_length=100)
    key = models.CharField(max_length=200)
    #: The last log row id that asked for this key: changes on every new invalidation.
    version = models.BigIntegerField()
    #: When the key was first queued since its last purge.
    created = models.FloatField()
    #: Not sent before this time (the backoff after a failure, or a ``Retry-After``).
    next_try = models.FloatField(default=0.0)
    #: A worker is sending it until this time; after that another worker may (it died).
    claimed_until = models.FloatField(null=True)
    attempts = models.IntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    #: 0: to purge; 1: purged once, to purge again at ``next_try`` (``SETTLE``).
    phase = models.SmallIntegerField(default=0)

    class Meta:
        db_table = "freshcache_purge"
        constraints = [
            models.UniqueConstraint(fields=["purger", "key"], name="freshcache_purge_key")
        ]

    def __str__(self) -> str:
        return f"{self.purger}: {self.key}"


class PublishedKey(models.Model):
    """One edge key of one published file (``edge/publish.py``; docs/edge.md, "Static
    publishing"): a purge of ``key`` deletes the file at ``path`` (relative to the web root).

    ``token`` names one publication of the file: a purge deletes only the rows of the
    publication it saw, so a newer one published meanwhile stays indexed.
    """

    id = models.BigAutoField(primary_key=True)
    path = models.CharField(max_length=1024)
    key = models.CharField(max_length=200)
    token = models.CharField(max_length=32)
    #: The page's cache key and store: a queued purge keeps a file its entry still holds.
    entry = models.CharField(max_length=400)
    store = models.CharField(max_length=100)

    class Meta:
        db_table = "freshcache_published"
        indexes = [
            models.Index(fields=["key"], name="freshcache_published_key"),
            models.Index(fields=["path"], name="freshcache_published_path"),
        ]


class JournalRecord(models.Model):
    """One record of a journal ring of the ``database://`` store (``stores/journal.py``)."""

    id = models.BigAutoField(primary_key=True)
    ring = models.CharField(max_length=32)
    record = models.TextField()

    class Meta:
        db_table = "freshcache_journal"
        indexes = [models.Index(fields=["ring", "id"], name="freshcache_journal_ring")]

    def __str__(self) -> str:
        return f"{self.ring} #{self.id}"


class JournalCounter(models.Model):
    """One counter of the ``database://`` store's journal (``stores/journal.py``)."""

    name = models.CharField(max_length=400, primary_key=True)
    value = models.FloatField(default=0.0)

    class Meta:
        db_table = "freshcache_counter"
        verbose_name = "cache dashboard"
        verbose_name_plural = "cache dashboard"

    def __str__(self) -> str:
        return f"{self.name}={self.value}"
