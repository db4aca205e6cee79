"""Nothing to do here any more: freshcache captures every ORM write (``save()``, ``delete()``,
``QuerySet.update()``, bulk operations, many-to-many changes, raw SQL) and invalidates exactly
what read the rows it changed. The explicit form lives in ``apps.py`` (``freshcache.register``).

Kept only so that older imports of ``blog.signals`` keep working; it connects no receivers.
"""
