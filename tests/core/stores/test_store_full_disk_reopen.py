"""A DiskStore reopened on a full disk: read-only, serving its entries, never called damaged.

The disk is really full: a 4 MB tmpfs (mounted when the tests run as root, else skipped with the
reason) filled up with a junk file after the store was written, so SQLite's own open path meets
the real errors: SQLITE_FULL ("database or disk is full") while another process still has the
store open (its -wal/-shm files exist, the new connection's first write fails), and an I/O error
on growing a new -shm file when nobody has it open. The new store is opened in a new process,
as an app restarting on that disk would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from small_fs import fill_up, mounted

from cachemux.errors import StoreError
from cachemux.stores import DiskStore, Entry


@pytest.fixture
def small_fs(tmp_path):
    yield from mounted(tmp_path, "4M")


REOPEN = textwrap.dedent("""
    import json, sys
    from cachemux.stores import DiskStore, Entry
    from cachemux.stores.disk import ReadOnlyStoreError
    out = {}
    try:
        s = DiskStore(sys.argv[1], readonly=None if sys.argv[2] == "None" else False)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit()
    hits = sum(s.get(f"k{i}") is not None and s.get(f"k{i}").value == f"v{i}" * 20 for i in range(30))
    try:
        s.put("new", Entry(value="x", cost=1.0))
        put = "admitted"
    except ReadOnlyStoreError as exc:
        put = f"ReadOnlyStoreError: {exc}"
    st = s.stats()
    print(json.dumps({"hits": hits, "put": put, "read_only": st["read_only"], "entries": st["entries"],
                      "reason": st["read_only_reason"], "drops": st["read_only_drops"]}))
""")


def _reopen(d: Path, readonly: str = "None") -> dict:
    done = subprocess.run([sys.executable, "-c", REOPEN, str(d), readonly], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("other", ["open", "closed"], ids=["another-process-open", "nobody-open"])
def test_full_disk_reopens_read_only_and_serves(small_fs, other):
    d = small_fs / "store"
    store = DiskStore(d, capacity=100)
    for i in range(30):
        assert store.put(f"k{i}", Entry(value=f"v{i}" * 20, cost=1.0)).admitted
    if other == "closed":
        store.close()  # SQLite folds the WAL into cache.db and removes -wal and -shm
    fill_up(small_fs)
    got = _reopen(d)
    print(f"\nfull disk, {other}: {got}")
    assert "error" not in got, got["error"]
    assert got["read_only"] is True and "disk is full" in got["reason"]
    assert got["hits"] == 30 and got["entries"] == 30  # every committed entry served
    assert got["put"].startswith("ReadOnlyStoreError") and got["drops"] == 1
    if other == "open":
        assert store.get("k3").value == "v3" * 20  # the running process keeps serving
        store.close()
    (small_fs / "filler").unlink()  # room again: the store opens writable with all its entries
    store = DiskStore(d)
    assert not store.read_only and store.stats()["read_only_reason"] is None and len(store) == 30
    assert store.put("new", Entry(value="x", cost=1.0)).admitted
    store.check_invariants()
    store.close()


def test_only_a_damaged_file_is_called_damaged(tmp_path, small_fs):
    garbage = tmp_path / "garbage"
    DiskStore(garbage, 5).close()
    (garbage / "cache.db").write_bytes(b"not a database, garbage " * 400)
    with pytest.raises(StoreError, match="damaged .*move the directory aside"):
        DiskStore(garbage)
    d = small_fs / "store"
    store = DiskStore(d, capacity=100)
    store.put("k0", Entry(value="v0" * 20, cost=1.0))
    fill_up(small_fs)
    refused = _reopen(d, readonly="False")["error"].replace(str(d), "<dir>")  # must write: refused, says why
    print(f"\nfull disk, readonly=False: {refused}")
    assert "disk is full" in refused and "readonly=False" in refused
    assert "damaged" not in refused and "move the directory aside" not in refused
    store.close()
