"""Issue 11, case 9a: the semantic index saved beside a DiskStore, loaded by a new cache, which
replays the change log from the snapshot's position instead of re-reading every entry; damaged,
foreign or too-old snapshots are logged and rebuilt, never served from. Real DiskStore, real
MiniLM; a small ANN threshold so the usearch graph is saved and loaded too. The timing at 100k
entries is in benchmarks/bench_cold_start.py."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from cachemux.cache import SemanticCache
from cachemux.errors import ConfigError
from cachemux.semantic import Embedder
from cachemux.semantic.embed_form import EMBED_FORM, embed_form
from cachemux.semantic.snapshot import SnapshotError, load
from cachemux.stores import DiskStore, MemoryStore, RedisStore
from redis_server import redis_server_factory  # noqa: F401 - fixture

LLM = "snap-llm"
OPTS = {"ann_threshold": 8}
QUESTIONS = ["What is the capital of France?", "How do I bake sourdough bread?", "Who wrote Hamlet?",
             "What is the boiling point of water?", "How far away is the moon?", "What is photosynthesis?",
             "Why is the sky blue?", "How do vaccines work?", "What causes earthquakes?",
             "Who painted the Mona Lisa?", "What is the speed of light?", "How do airplanes fly?"]


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def _filled(tmp_path, embedder, opts=OPTS, **kw):
    cache = SemanticCache(DiskStore(tmp_path / "store", capacity=100), embedder=embedder, threshold=0.9, index_options=opts, **kw)
    for q in QUESTIONS:
        cache.update(q, LLM, f"answer: {q}")
    return cache


def _reopen(tmp_path, embedder, monkeypatch=None, opts=OPTS, **kw):
    cache = SemanticCache(DiskStore(tmp_path / "store"), embedder=embedder, threshold=0.9, index_options=opts, **kw)
    rebuilds = []
    if monkeypatch is not None:
        real = cache.mirror.rebuild
        monkeypatch.setattr(cache.mirror, "rebuild", lambda index: (rebuilds.append(1), real(index)))
    return cache, rebuilds


def _manifest(tmp_path):
    found = list((tmp_path / "store" / "semantic-index").glob("index-*.json"))
    assert len(found) == 1, found
    return found[0]


def test_close_saves_and_a_new_cache_loads_without_rebuilding(tmp_path, embedder, monkeypatch):
    first = _filled(tmp_path, embedder)
    assert first.lookup("What's the capital city of France?", LLM) is not None  # builds the index
    first.close()
    head = json.loads(_manifest(tmp_path).read_text())
    assert head["entries"] == len(QUESTIONS) and any(head["graphs"])  # rows and a usearch graph

    # another writer changes the store after the snapshot: the new cache must replay that
    other = SemanticCache(DiskStore(tmp_path / "store"), embedder=embedder, threshold=0.9, index_path=False)
    other.update("What is the tallest mountain on Earth?", LLM, "Everest")
    other.delete("Who wrote Hamlet?", LLM)
    other.close()

    cache, rebuilds = _reopen(tmp_path, embedder, monkeypatch)
    assert cache.lookup("What's the capital city of France?", LLM) == "answer: What is the capital of France?"
    assert cache.lookup("Which is the tallest mountain on Earth?", LLM) == "Everest"   # replayed "add"
    assert cache.lookup("Who is the author of Hamlet?", LLM) is None                   # replayed "del"
    assert rebuilds == [] and cache._index.part(next(iter(cache._index.partitions()))).backend == "usearch"
    cache.check_invariants()
    assert cache.stats()["snapshot_errors"] == 0
    cache.close()


@pytest.mark.parametrize("damage", ["truncated data", "flipped byte in graph", "garbage manifest",
                                    "missing data file", "other embedder"])
def test_damaged_snapshot_is_logged_and_rebuilt(tmp_path, embedder, monkeypatch, caplog, damage):
    first = _filled(tmp_path, embedder)
    first.save_index()
    first.close()
    manifest = _manifest(tmp_path)
    head = json.loads(manifest.read_text())
    folder = manifest.parent
    if damage == "truncated data":
        data = folder / head["data"]["file"]
        data.write_bytes(data.read_bytes()[:-100])
    elif damage == "flipped byte in graph":
        graph = folder / next(g for g in head["graphs"] if g)["file"]
        raw = bytearray(graph.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        graph.write_bytes(bytes(raw))
    elif damage == "garbage manifest":
        manifest.write_bytes(b"\x00\xff not json")
    elif damage == "missing data file":
        (folder / head["data"]["file"]).unlink()
    else:
        head["embedder"] = "some-other-model"
        manifest.write_text(json.dumps(head))
    with pytest.raises(SnapshotError):
        load(manifest, dim=embedder.dim, source=f"DiskStore:{(tmp_path / 'store').resolve()}",
             embedder=f"{embedder.model_name}|{EMBED_FORM}", index_options=OPTS)
    caplog.set_level(logging.WARNING, logger="cachemux.cache")
    cache, rebuilds = _reopen(tmp_path, embedder, monkeypatch)
    assert cache.lookup("What's the capital city of France?", LLM) == "answer: What is the capital of France?"
    assert rebuilds == [1] and cache.stats()["snapshot_errors"] == 1
    assert any("saved semantic index is not usable" in r.getMessage() for r in caplog.records)
    cache.check_invariants()
    cache.close()  # a new snapshot replaces the damaged one
    reloaded, cursor = load(_manifest(tmp_path), dim=embedder.dim,
                            source=f"DiskStore:{(tmp_path / 'store').resolve()}",
                            embedder=f"{embedder.model_name}|{EMBED_FORM}", index_options=OPTS)
    assert len(reloaded) == len(QUESTIONS)


def test_snapshot_older_than_the_change_log_is_rebuilt(tmp_path, embedder, monkeypatch):
    store = DiskStore(tmp_path / "store", capacity=5000, log_size=1)
    cache = SemanticCache(store, embedder=embedder, threshold=0.9, index_options=OPTS)
    for q in QUESTIONS:
        cache.update(q, LLM, f"answer: {q}")
    cache.save_index()
    cache.close()
    writer = SemanticCache(DiskStore(tmp_path / "store"), embedder=embedder, threshold=0.9, index_path=False)
    rng = np.random.default_rng(0)
    for i in range(1_005):  # past log_size + the trim batch: the snapshot's position is gone
        writer.update(f"filler question number {i}", LLM, "x", embedding=rng.standard_normal(embedder.dim))
    writer.close()
    cache, rebuilds = _reopen(tmp_path, embedder, monkeypatch)
    assert cache.lookup("What's the capital city of France?", LLM) == "answer: What is the capital of France?"
    assert rebuilds == [1] and len(cache._index) == len(QUESTIONS) + 1_005
    cache.check_invariants()
    cache.close()


def test_snapshot_of_another_store_is_not_used(tmp_path, embedder, monkeypatch):
    shared = tmp_path / "idx"
    a = SemanticCache(DiskStore(tmp_path / "a"), embedder=embedder, threshold=0.9, index_path=shared, index_options=OPTS)
    for q in QUESTIONS:
        a.update(q, LLM, f"answer: {q}")
    a.save_index()
    a.close()
    b = SemanticCache(DiskStore(tmp_path / "b"), embedder=embedder, threshold=0.9, index_path=shared, index_options=OPTS)
    assert b.lookup("What's the capital city of France?", LLM) is None  # nothing of store a
    assert b.stats()["snapshot_errors"] == 1 and len(b._index) == 0
    b.close()


def test_memory_store_saves_nothing_and_redis_saves_where_told(tmp_path, embedder, redis_server_factory):  # noqa: F811
    mem = SemanticCache(MemoryStore(), embedder=embedder, threshold=0.9)
    mem.update(QUESTIONS[0], LLM, "a")
    assert mem.lookup("What's the capital city of France?", LLM) == "a"
    assert not mem.save_index()
    mem.close()
    with pytest.raises(ConfigError, match="index_path: a MemoryStore keeps no change log"):
        SemanticCache(MemoryStore(), embedder=embedder, index_path=tmp_path / "mi")
    server = redis_server_factory()
    r = SemanticCache(RedisStore(server.url, namespace="snap"), embedder=embedder, threshold=0.9, index_path=tmp_path / "ri",
                      index_options=OPTS)
    for q in QUESTIONS:
        r.update(q, LLM, f"answer: {q}")
    assert r.save_index()
    r.close()
    r2 = SemanticCache(RedisStore(server.url, namespace="snap"), embedder=embedder, threshold=0.9, index_path=tmp_path / "ri",
                       index_options=OPTS)
    r2.mirror.rebuild = None  # type: ignore[assignment] - a rebuild would fail the lookup's sync (a fault)
    assert r2.lookup("What's the capital city of France?", LLM) == "answer: What is the capital of France?"
    assert r2.stats()["errors"] == 0
    r2.close()


def test_unwritable_snapshot_folder_is_a_logged_fault(tmp_path, embedder):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = SemanticCache(DiskStore(tmp_path / "store"), embedder=embedder, threshold=0.9, index_path=blocker / "idx")
    cache.update(QUESTIONS[0], LLM, "a")
    assert cache.lookup("What's the capital city of France?", LLM) == "a"
    assert not cache.save_index() and cache.stats()["errors"] == 1
    cache.close()


def test_damaged_row_in_the_loaded_index_never_serves_another_answer(tmp_path, embedder, monkeypatch):
    """A row of the loaded index holding another question's vector (rows are checksummed on
    load; this is damage after it) proposes the wrong entry, which the hit-time re-check on the
    entry's own stored embedding refuses (and repairs in the index). Exact search, so that every
    row is scored."""
    exact = {"ann_threshold": None}
    first = _filled(tmp_path, embedder, exact)
    first.save_index()
    first.close()
    cache, rebuilds = _reopen(tmp_path, embedder, monkeypatch, exact)
    cache.lookup("Tell me the boiling point of water", LLM)  # a semantic lookup: loads the snapshot
    france, hamlet = cache.key_for(QUESTIONS[0], LLM), cache.key_for("Who wrote Hamlet?", LLM)
    ix = cache._index.part(next(iter(cache._index.partitions())))
    query = "What's the capital city of France?"
    ix._mat[ix._rows[hamlet]] = embedder.embed([embed_form(query)])[0]  # Hamlet's row: the best match of the query
    m = cache.match(query, LLM)
    assert m is not None and m.value == "answer: What is the capital of France?" and m.key == france
    assert cache.lookup("Who is the author of Hamlet?", LLM) == "answer: Who wrote Hamlet?"  # repaired
    assert rebuilds == [] and cache.stats()["snapshot_errors"] == 0
    cache.check_invariants()
    cache.close()


def test_randomised_rows_in_the_snapshot_are_detected_and_rebuilt(tmp_path, embedder, monkeypatch, caplog):
    """Random bytes over 30 of 120 saved rows: the data file's CRC-32 no longer matches, the
    snapshot is logged and rebuilt from the store, and all 120 semantic hits still come (loaded
    unchecked, the damaged rows' entries miss)."""
    questions = [f"What is fact number {i} about the history of city{i}?" for i in range(120)]
    vecs = embedder.embed([embed_form(q) for q in questions])
    first = SemanticCache(DiskStore(tmp_path / "store", capacity=1000), embedder=embedder, threshold=0.9,
                          index_options=OPTS)
    for q, v in zip(questions, vecs):
        first.update(q, LLM, f"answer: {q}", embed_text=q, embedding=v)
    first.save_index()
    first.close()
    head = json.loads(_manifest(tmp_path).read_text())
    data = _manifest(tmp_path).parent / head["data"]["file"]
    raw = bytearray(data.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    start = 8 + n + json.loads(raw[8:8 + n])["rows.0"]["data_offsets"][0]
    width = embedder.dim * 4
    rng = np.random.default_rng(5)
    for row in rng.choice(120, 30, replace=False):
        at = start + int(row) * width
        raw[at:at + width] = rng.integers(0, 256, width, dtype=np.uint8).tobytes()
    data.write_bytes(bytes(raw))
    caplog.set_level(logging.WARNING, logger="cachemux.cache")
    cache, rebuilds = _reopen(tmp_path, embedder, monkeypatch)
    hits = [cache.lookup(f"{q} (asked again)", LLM, embed_text=q) for q in questions]
    assert hits == [f"answer: {q}" for q in questions]
    assert rebuilds == [1] and cache.stats()["snapshot_errors"] == 1
    assert any("is damaged (CRC-32" in r.getMessage() for r in caplog.records)
    cache.check_invariants()
    cache.close()


def test_snapshot_newer_than_a_restored_store_is_rebuilt(tmp_path, embedder, monkeypatch):
    """cache.db backed up, the snapshot saved later (300 entries on), the old cache.db restored
    beside it, then 400 new entries: the store's log passed the snapshot's position with other
    changes than the snapshot saw. Replayed from there, 300 of the 400 would stay invisible;
    the change recorded at the snapshot's position differs from the store's, so it is rebuilt."""
    store_dir = tmp_path / "store"
    cache = SemanticCache(DiskStore(store_dir, capacity=5000), embedder=embedder, threshold=0.9, index_options=OPTS)
    for q in QUESTIONS:
        cache.update(q, LLM, f"answer: {q}")
    cache.save_index()
    cache.close()
    backup = tmp_path / "backup"
    backup.mkdir()
    for f in store_dir.glob("cache.db*"):
        shutil.copy2(f, backup / f.name)
    rng = np.random.default_rng(6)
    cache, _ = _reopen(tmp_path, embedder)
    for i, v in enumerate(rng.standard_normal((300, embedder.dim))):
        cache.update(f"later question {i}", LLM, "x", embedding=v)
    assert cache.save_index()
    cache.close()
    for f in store_dir.glob("cache.db*"):
        f.unlink()
    for f in backup.iterdir():
        shutil.copy2(f, store_dir / f.name)
    writer = SemanticCache(DiskStore(store_dir), embedder=embedder, threshold=0.9, index_path=False)
    new = rng.standard_normal((400, embedder.dim)).astype(np.float32)
    for i, v in enumerate(new):
        writer.update(f"new question {i}", LLM, "y", embedding=v)
    writer.close()
    cache, rebuilds = _reopen(tmp_path, embedder, monkeypatch)
    assert cache.lookup("What's the capital city of France?", LLM) == "answer: What is the capital of France?"
    part = next(iter(cache._index.partitions()))
    found = [cache._index.search(part, v, 1) for v in new]
    invisible = [i for i, f in enumerate(found) if not f or f[0][0] != cache.key_for(f"new question {i}", LLM)]
    assert invisible == [] and len(cache._index) == len(QUESTIONS) + 400
    assert rebuilds == [1] and cache.stats()["snapshot_errors"] == 1
    cache.check_invariants()
    cache.close()


_SAVER = """
import os, sys, time
from cachemux.cache import SemanticCache
from cachemux.semantic import Embedder
from cachemux.stores import DiskStore

real, stop_at = os.fsync, int(sys.argv[2])
calls = []

def fsync(fd):  # the snapshot's files are fsynced before their rename: stop after the stop_at-th
    real(fd)
    calls.append(fd)
    if len(calls) == stop_at:
        print("writing", flush=True)
        time.sleep(600)

os.fsync = fsync
cache = SemanticCache(DiskStore(sys.argv[1]), embedder=Embedder().load(), threshold=0.9,
                      index_options={"ann_threshold": 8})
cache.save_index()
"""


def test_temp_files_of_killed_saves_are_removed_by_the_next_save(tmp_path, embedder):
    """Real child processes stopped inside a save (after fsyncing the graph, data or manifest
    temp file, before its rename), then SIGKILLed: nothing renames or removes their hidden temp
    files but the next save's sweep. A live save's temp file (locked) survives another process's
    save; once its writer is killed, the next save removes it."""
    import signal
    import subprocess
    import sys

    cache = _filled(tmp_path, embedder)
    assert cache.save_index()
    folder = _manifest(tmp_path).parent
    for stop_at in (1, 2, 3, 2):
        dead = set(folder.glob(".*.tmp"))  # the previous killed save's
        child = subprocess.Popen([sys.executable, "-c", _SAVER, str(tmp_path / "store"), str(stop_at)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "writing"
            live = set(folder.glob(".*.tmp")) - dead
            assert len(live) == 1 and next(iter(live)).stat().st_size > 0
            assert cache.save_index()
            left = set(folder.glob(".*.tmp"))
            assert live <= left  # being written by a live process: left alone
            assert not dead & left  # the killed save's: removed
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(60)
            child.stdout.close()
    assert len(list(folder.glob(".*.tmp"))) == 1  # the last kill's: the others were removed
    assert cache.save_index()
    assert list(folder.glob(".*.tmp")) == []
    assert cache.lookup("What's the capital city of France?", LLM) == "answer: What is the capital of France?"
    cache.close()


def test_deferred_graph_inserts_are_searched_exactly_until_drained():
    from cachemux.errors import InvariantError
    from cachemux.semantic.index import NO_LABEL, VectorIndex

    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((40, 16)).astype(np.float32)
    ix = VectorIndex(16, ann_threshold=10)
    for i in range(20):
        ix.add(f"k{i}", vecs[i])
    assert ix.backend == "usearch"
    for i in range(20, 40):
        ix.add(f"k{i}", vecs[i], defer=True)  # in the rows, not yet in the graph
    ix.check_invariants()
    assert len(ix._ann) == 20 and ix.search(vecs[33], 1)[0][0] == "k33"
    assert ix.remove("k33") and ix.search(vecs[33], 1)[0][0] != "k33"
    ix.check_invariants()
    assert ix.drain(5) == 14 and len(ix._ann) == 25
    ix.check_invariants()
    # a snapshot copies the index as it is: deferred rows are saved as deferred (no graph inserts
    # while the index lock is held), with spare zero rows to grow into after a restore
    keys, rows, labels, next_label, graph, deferred = ix.export(spare=8)
    assert len(keys) == 39 and rows.shape == (47, 16) and not rows[39:].any()
    assert len(deferred) == 14 and int((labels == NO_LABEL).sum()) == 14 and len(ix._ann) == 25
    import usearch.index

    ann = usearch.index.Index(ndim=16, **ix.ann_options)
    ann.load(graph)
    back = VectorIndex.restore(16, keys, rows, labels, next_label, ann, deferred, ann_threshold=10)
    back.check_invariants()
    assert all(back.search(vecs[i], 1)[0][0] == f"k{i}" for i in range(40) if i != 33)
    back.add("k33", vecs[33], defer=True)  # into the spare rows: no copy of the matrix
    assert back._mat is rows and back.search(vecs[33], 1)[0][0] == "k33"
    assert back.drain() == 0 and len(back._ann) == 40
    back.check_invariants()
    with pytest.raises(InvariantError):  # a deferred key that has a label too: inconsistent
        VectorIndex.restore(16, keys, rows, labels, next_label, ann, deferred[:-1], ann_threshold=10)
    assert ix.drain() == 0 and len(ix._ann) == 39
    assert all(ix.search(vecs[i], 1)[0][0] == f"k{i}" for i in range(40) if i != 33)
    ix.check_invariants()


# ---- saving without stalling lookups; replayed and deferred rows; save_every --------------------
def test_lookups_proceed_while_a_save_writes_its_files(tmp_path, embedder, monkeypatch):
    """The index lock is held only while the copy is taken: with the file writing stopped
    mid-save, another thread's semantic lookup and update complete."""
    import threading

    from cachemux.semantic import snapshot

    cache = _filled(tmp_path, embedder)
    assert cache.lookup("What's the capital city of France?", LLM) is not None
    entered, release = threading.Event(), threading.Event()
    real_write = snapshot.write

    def slow_write(*args, **kw):
        entered.set()
        assert release.wait(30)
        return real_write(*args, **kw)

    monkeypatch.setattr(snapshot, "write", slow_write)
    saver = threading.Thread(target=lambda: results.append(cache.save_index()))
    results: list[bool] = []
    saver.start()
    assert entered.wait(30)  # the save is now writing, with the copy taken
    got = []
    worker = threading.Thread(target=lambda: got.append((cache.lookup("Who is the author of Hamlet?", LLM),
                                                         cache.update("Who discovered penicillin?", LLM, "Fleming"))))
    worker.start()
    worker.join(30)
    assert not worker.is_alive() and got == [("answer: Who wrote Hamlet?", True)]  # not blocked by the save
    release.set()
    saver.join(30)
    assert results == [True] and cache.last_save["entries"] == len(QUESTIONS)
    cache.close()  # saves the update made during the save
    assert json.loads(_manifest(tmp_path).read_text())["entries"] == len(QUESTIONS) + 1


def test_replayed_changes_are_saved_deferred_and_restored(tmp_path, embedder, monkeypatch):
    """60 changes behind the snapshot: replayed in one batch (deferred from the graph), saved
    with their deferred state, loaded by a third process, all searchable, nothing rebuilt."""
    first = _filled(tmp_path, embedder)
    first.save_index()
    first.close()
    writer = SemanticCache(DiskStore(tmp_path / "store", capacity=None), embedder=embedder, threshold=0.9,
                           index_path=False)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((60, embedder.dim)).astype(np.float32)
    for i, v in enumerate(vecs):  # (capacity 100: 12 questions + 60 fillers)
        writer.update(f"filler {i}", LLM, f"f{i}", embedding=v)
    writer.close()
    from cachemux.semantic.index import PartitionedIndex

    batches = []
    real = PartitionedIndex.add_many
    monkeypatch.setattr(PartitionedIndex, "add_many", lambda self, keys, part, v, defer=False: (
        batches.append((len(keys), defer)), real(self, keys, part, v, defer=defer)))
    cache, rebuilds = _reopen(tmp_path, embedder, monkeypatch)
    assert cache.lookup("What's the capital city of France?", LLM) is not None
    ix = cache._index.part(next(iter(cache._index.partitions())))
    assert rebuilds == [] and batches == [(60, True)]  # one batch, kept out of the graph
    assert 60 - 4 <= len(ix._deferred) <= 60  # a few drained per sync
    assert all(ix.search(v, 1)[0][0] == cache.key_for(f"filler {i}", LLM) for i, v in enumerate(vecs))
    cache.save_index()
    head = json.loads(_manifest(tmp_path).read_text())
    assert head["entries"] == len(QUESTIONS) + 60
    cache.close()
    third, rebuilds = _reopen(tmp_path, embedder, monkeypatch)
    assert third.lookup("Who is the author of Hamlet?", LLM) == "answer: Who wrote Hamlet?"
    assert rebuilds == [] and len(third._index) == len(QUESTIONS) + 60
    third.check_invariants()
    third.close()


def test_save_every_saves_in_the_background(tmp_path, embedder):
    cache = _filled(tmp_path, embedder, save_every=5)
    assert cache.lookup("What's the capital city of France?", LLM) is not None
    cache._wait_for_writer()
    cursor = json.loads(_manifest(tmp_path).read_text())["cursor"]
    for i in range(6):
        cache.update(f"Question number {i} about geology?", LLM, f"g{i}")
    cache.lookup("Explain photosynthesis, please", LLM)  # (not exact) its sync sees 6 changes >= 5: saves
    cache._wait_for_writer()
    assert json.loads(_manifest(tmp_path).read_text())["cursor"] > cursor
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="save_every"):
            SemanticCache(MemoryStore(10), semantic=False, save_every=bad)
    cache.close()
