"""Integrations with other packages, each importing its package lazily (optional extras)."""
