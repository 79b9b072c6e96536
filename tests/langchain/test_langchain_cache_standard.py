"""LangChain's own cache contract (langchain_tests' SyncCacheTestSuite / AsyncCacheTestSuite) for
CacheMuxCache with default settings (the packaged embedder, calibrated threshold, latency cost)
on each real store: MemoryStore, DiskStore on a tmp dir, RedisStore on a real redis-server."""

from __future__ import annotations

import itertools
import os

import pytest
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite
from redis_server import redis_server  # noqa: F401 - fixture

from cachemux.stores import DiskStore, MemoryStore, RedisStore
from langchain_cachemux import CacheMuxCache

# the async suite's tests are coroutines (strict asyncio mode); its one sync test gets the mark too
_async = [pytest.mark.asyncio, pytest.mark.filterwarnings(
    "ignore:The test <Function test_no_overrides_DO_NOT_OVERRIDE> is marked with '@pytest.mark.asyncio'")]

_ns = itertools.count()


def _store(kind: str, request: pytest.FixtureRequest):
    if kind == "memory":
        return MemoryStore()
    if kind == "disk":
        return DiskStore(request.getfixturevalue("tmp_path") / "lc-standard")
    server = request.getfixturevalue("redis_server")
    return RedisStore(server.url, namespace=f"lc-standard-{os.getpid()}-{next(_ns)}")


def _mark_async(cls: type) -> type:
    for mark in _async:
        cls = mark(cls)
    return cls


class _Stores:
    kind = "memory"

    @pytest.fixture
    def cache(self, request: pytest.FixtureRequest):
        store = _store(self.kind, request)
        yield CacheMuxCache(store=store)  # default settings otherwise
        store.close()


class TestMemorySync(_Stores, SyncCacheTestSuite):
    kind = "memory"


@_mark_async
class TestMemoryAsync(_Stores, AsyncCacheTestSuite):
    kind = "memory"


class TestDiskSync(_Stores, SyncCacheTestSuite):
    kind = "disk"


@_mark_async
class TestDiskAsync(_Stores, AsyncCacheTestSuite):
    kind = "disk"


class TestRedisSync(_Stores, SyncCacheTestSuite):
    kind = "redis"


@_mark_async
class TestRedisAsync(_Stores, AsyncCacheTestSuite):
    kind = "redis"
