"""Helpers shared by the fault, concurrency and security tests (real services, no mocks)."""

from .redis_server import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
