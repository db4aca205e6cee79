"""Invalidation receivers (filled in below once the views exist)."""
