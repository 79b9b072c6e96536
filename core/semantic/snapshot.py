"""The semantic index saved beside its store, so a new process need not rebuild it.

A snapshot is three kinds of file in one folder (for a ``DiskStore``: ``<store>/semantic-index``):

* ``<name>.json``: the manifest, replaced atomically (temp file + ``os.replace``) and written
  last: format and version, the embedder id and dimension, the store's identity and its
  change-log position (``cursor``) the index reflects with the store's change at that position
  (``change``: ``[op, key]``, or null when the log no longer held it), and for every data file its
  size and CRC-32;
* ``<name>-<token>.safetensors``: every partition's float32 rows (the exact vectors the threshold
  is decided on), ANN labels, and the keys and partition names as JSON bytes;
* ``<name>-<token>-<i>.usearch``: usearch's own file of partition ``i``'s HNSW graph (only for
  partitions past the ANN threshold; rebuilding one costs tens of seconds at 100k entries).

No pickle: JSON, safetensors and usearch's format. A new manifest names new data files, so a
reader holding the old manifest never sees a half-written file; the files of older snapshots
are removed at a later save (once no manifest names them and they are 5 minutes old, so
another process's snapshot being written is left alone). Each file is written as a hidden temp
file (``.<name>.<random>.tmp``) locked (``flock``) until it is renamed into place; a save also
removes the temp files a killed save left: those no live save holds locked (without ``fcntl``:
those 5 minutes old). ``load`` checks sizes and checksums *before* any byte reaches a parser
(usearch is native code; the data and graph files are checksummed whole: ~0.06 s for the 160 MB
of rows of 100k entries), then the parts against each other; the rows are then memory-mapped
copy-on-write (pages already in the page cache). Anything wrong raises ``SnapshotError`` and the
cache logs it and rebuilds from the store. A loaded snapshot is only a starting point: the cache
replays the store's change log from ``cursor`` (a reset there, e.g. the log was trimmed past it
or the store was recreated, means a full rebuild), and every semantic hit is re-checked against
the matched entry's own stored embedding. A store restored from a backup older than the
snapshot has a log that went on differently from ``cursor``'s history: ``load`` compares the
store's change at ``cursor`` with the recorded one (``change_at``), so such a snapshot is
rebuilt rather than replayed from a position whose earlier changes it never saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cachemux.errors import CacheMuxError
from cachemux.semantic.index import PartitionedIndex, VectorIndex, _usearch

try:
    import fcntl
except ImportError:  # Windows: no flock; killed saves' temp files are removed by age only
    fcntl = None  # type: ignore[assignment]

__all__ = ["FORMAT", "Captured", "SnapshotError", "capture", "load", "save", "write"]

FORMAT = "cachemux-semantic-index"
VERSION = 2  # 2: the change at ``cursor`` is recorded (version-1 snapshots are rebuilt once)
# data files no manifest names are removed once this old: younger ones may belong to a snapshot
# another process is writing right now (so are unlocked empty temp files: see _sweep_temps)
ORPHAN_AGE_S = 300.0


class SnapshotError(CacheMuxError):
    """A snapshot that is missing parts, damaged, or made for another store or embedder."""


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _write(path: Path, data: bytes) -> dict[str, Any]:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            if fcntl is not None:  # held until renamed: another save's sweep leaves a live temp file alone
                fcntl.flock(f, fcntl.LOCK_EX)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:
                os.replace(tmp, path)
        if fcntl is None:  # (Windows cannot rename an open file)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return {"file": path.name, "bytes": len(data), "crc32": _crc(data)}


def _sweep_temps(folder: Path, stem: str) -> None:
    """Remove the temp files (``_write``) of saves of snapshot ``stem`` killed mid-write: those
    no live save holds locked. An empty one may be a save between creating and locking it, so it
    waits ``ORPHAN_AGE_S``; without ``fcntl`` every one does."""
    cutoff = time.time() - ORPHAN_AGE_S
    for tmp in folder.glob(f".{stem}[.-]*.tmp"):
        with contextlib.suppress(OSError):  # (BlockingIOError: a live save holds it; gone meanwhile)
            if fcntl is None:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                continue
            with open(tmp, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_size or st.st_mtime < cutoff:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if os.stat(tmp).st_ino == st.st_ino:  # still that file, not renamed into place
                        tmp.unlink()


class Captured:
    """A consistent copy of an index at one change-log position (``capture``), written by
    ``write`` without holding the index lock."""

    __slots__ = ("change", "cursor", "dim", "entries", "graphs", "index_options", "parts", "tensors")

    def __init__(self, index: PartitionedIndex, cursor: int, change: list[str] | None = None) -> None:
        self.cursor, self.dim, self.entries = int(cursor), index.dim, len(index)
        self.change = change
        self.index_options = _jsonable(index.index_options)
        self.tensors: dict[str, np.ndarray] = {}
        self.parts: list[dict[str, Any]] = []
        self.graphs: list[bytes | None] = []
        for i, name in enumerate(index.partitions()):
            ix = index.part(name)
            assert ix is not None
            keys, rows, labels, next_label, graph, deferred = ix.export(spare=max(256, len(ix) // 8))
            self.tensors[f"rows.{i}"] = rows
            if labels is not None:
                self.tensors[f"labels.{i}"] = labels
            self.parts.append({"name": name, "keys": keys, "next_label": next_label, "deferred": deferred})
            self.graphs.append(graph)


def capture(index: PartitionedIndex, cursor: int, change: list[str] | None = None) -> Captured:
    """Copy what a snapshot of ``index`` (at change-log position ``cursor``, whose change was
    ``change``: ``[op, key]`` or None) needs: the rows (with spare room, see
    ``VectorIndex.export``), keys, labels and serialised graphs. The only part of a save that
    needs the index lock (one memory copy: ~0.1-0.3 s at 100k entries)."""
    return Captured(index, cursor, change)


def save(manifest: Path, index: PartitionedIndex, *, cursor: int, source: str, embedder: str,
         change: list[str] | None = None) -> int:
    """``write(manifest, capture(index, cursor, change), ...)``: returns the bytes written."""
    return write(manifest, capture(index, cursor, change), source=source, embedder=embedder)


def write(manifest: Path, snap: Captured, *, source: str, embedder: str) -> int:
    """Write ``snap`` (reflecting the store ``source`` up to its cursor) as the snapshot named by
    ``manifest``; returns the bytes written. OSError propagates."""
    import safetensors.numpy

    manifest.parent.mkdir(exist_ok=True)  # not its parents: never re-create a deleted store directory
    stem = manifest.stem
    token = secrets.token_hex(6)
    tensors = dict(snap.tensors)
    graphs = [None if g is None else _write(manifest.with_name(f"{stem}-{token}-{i}.usearch"), g)
              for i, g in enumerate(snap.graphs)]
    listing = json.dumps(snap.parts, separators=(",", ":")).encode("utf-8")
    tensors["parts"] = np.frombuffer(listing, dtype=np.uint8)
    data = _write(manifest.with_name(f"{stem}-{token}.safetensors"), safetensors.numpy.save(tensors))
    data["parts_crc32"] = _crc(listing)
    head = {"format": FORMAT, "version": VERSION, "embedder": embedder, "dim": snap.dim, "source": source,
            "cursor": snap.cursor, "change": snap.change, "entries": snap.entries, "data": data, "graphs": graphs,
            "index_options": snap.index_options}
    _write(manifest, (json.dumps(head, indent=1) + "\n").encode("utf-8"))
    written = data["bytes"] + sum(g["bytes"] for g in graphs if g)
    keep = {data["file"]} | {g["file"] for g in graphs if g}
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):  # what the manifest names now
        now = json.loads(manifest.read_bytes())  # (another process may have replaced ours meanwhile)
        keep |= {now["data"]["file"]} | {g["file"] for g in now["graphs"] if g}
    cutoff = time.time() - ORPHAN_AGE_S
    for old in manifest.parent.glob(f"{stem}-*"):  # earlier snapshots' files, unless being written
        with contextlib.suppress(OSError):
            if old.name not in keep and old.stat().st_mtime < cutoff:
                old.unlink()
    _sweep_temps(manifest.parent, stem)
    return written


def _read(folder: Path, ref: Any) -> bytes:
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str) or "/" in ref["file"] or ref["file"].startswith("."):
        raise SnapshotError(f"bad file reference {ref!r:.200}")
    path = folder / ref["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc}") from exc
    if len(data) != ref.get("bytes") or _crc(data) != ref.get("crc32"):
        raise SnapshotError(f"{path} is damaged ({len(data)} bytes, expected {ref.get('bytes')}; checksum mismatch)")
    return data


_DTYPES = {"F32": np.float32, "U64": np.uint64, "U8": np.uint8}
_MAX_HEADER = 64 << 20
_CHUNK = 4 << 20


def _map(folder: Path, ref: Any) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file (format: 8-byte little-endian header length, JSON header
    of dtype/shape/data_offsets, raw little-endian data), checked against the file's size and
    CRC-32 first (a randomised row would otherwise only show as missed hits): the float32 rows
    as a copy-on-write memory map, the rest in memory."""
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str) or "/" in ref["file"] or ref["file"].startswith("."):
        raise SnapshotError(f"bad file reference {ref!r:.200}")
    path = folder / ref["file"]
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size != ref.get("bytes"):
                raise SnapshotError(f"{path} is damaged ({size} bytes, expected {ref.get('bytes')})")
            crc = 0
            while chunk := f.read(_CHUNK):
                crc = zlib.crc32(chunk, crc)
            if crc != ref.get("crc32"):
                raise SnapshotError(f"{path} is damaged (CRC-32 {crc}, expected {ref.get('crc32')!r:.40})")
            f.seek(0)
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= min(_MAX_HEADER, size - 8):
                raise SnapshotError(f"{path} is damaged (header length {n} in {size} bytes)")
            header = json.loads(f.read(n))
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise SnapshotError(f"{path}: damaged header: {exc}") from exc
    out: dict[str, np.ndarray] = {}
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(x) for x in info["shape"])
            start, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"{path}: bad tensor entry {name!r}: {exc}") from exc
        count = int(np.prod(shape, dtype=np.int64))
        if min(shape, default=0) < 0 or end - start != count * dtype.itemsize or start < 0 or base + end > size:
            raise SnapshotError(f"{path}: tensor {name!r} does not fit the file")
        if name.startswith("rows.") and count:
            out[name] = np.memmap(path, dtype=dtype, mode="c", offset=base + start, shape=shape)
        else:
            out[name] = np.fromfile(path, dtype=dtype, count=count, offset=base + start).reshape(shape)
    return out


def load(manifest: Path, *, dim: int, source: str, embedder: str, index_options: dict[str, Any],
         change_at: Callable[[int], list[str] | None] | None = None) -> tuple[PartitionedIndex, int] | None:
    """``(index, cursor)`` from the snapshot, or None when there is none; ``SnapshotError`` when
    it is damaged or was made for another store, embedder or index configuration, or when
    ``change_at(cursor)`` (the store's change at the snapshot's position now) is not the change
    recorded there: the store's log went on differently (an older copy of it restored), so
    replaying it from ``cursor`` would skip changes."""
    try:
        text = manifest.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"cannot read {manifest}: {exc}") from exc
    try:
        head = json.loads(text)
    except ValueError as exc:
        raise SnapshotError(f"{manifest} is not valid JSON: {exc}") from exc  # (UnicodeDecodeError too)
    if not isinstance(head, dict) or head.get("format") != FORMAT or head.get("version") != VERSION:
        raise SnapshotError(f"{manifest} is not a version-{VERSION} {FORMAT} manifest")
    for field, want in (("embedder", embedder), ("dim", dim), ("source", source),
                        ("index_options", _jsonable(index_options))):
        if head.get(field) != want:
            raise SnapshotError(f"{manifest} was made for {field}={head.get(field)!r:.200}, not {want!r:.200}")
    cursor = head.get("cursor")
    graphs = head.get("graphs")
    if isinstance(cursor, bool) or not isinstance(cursor, int) or not isinstance(graphs, list):
        raise SnapshotError(f"{manifest}: bad cursor or graph list")
    if change_at is not None and (now := change_at(cursor)) != head.get("change"):
        raise SnapshotError(f"{manifest}: the store's change at position {cursor} is {now!r:.120}, the snapshot's "
                            f"{head.get('change')!r:.120} (the store was restored from an older copy?)")
    folder = manifest.parent
    try:
        tensors = _map(folder, head.get("data"))
        listing = tensors.pop("parts")
        if _crc(listing.tobytes()) != head["data"].get("parts_crc32"):
            raise SnapshotError(f"{manifest}: the key listing is damaged (checksum mismatch)")
        parts = json.loads(listing.tobytes().decode("utf-8"))
    except SnapshotError:
        raise
    except Exception as exc:  # JSON or memory-map errors
        raise SnapshotError(f"{manifest}: unreadable data file: {type(exc).__name__}: {exc}") from exc
    if not isinstance(parts, list) or len(parts) != len(graphs):
        raise SnapshotError(f"{manifest}: {len(graphs)} graphs for the partitions listed")
    index = PartitionedIndex(dim, **index_options)
    usearch_index = None
    try:
        for i, (part, graph) in enumerate(zip(parts, graphs)):
            rows = tensors.get(f"rows.{i}")
            labels = tensors.get(f"labels.{i}")
            if rows is None and not part["keys"]:
                rows = np.zeros((0, dim), dtype=np.float32)
            if rows is None or rows.dtype != np.float32 or rows.ndim != 2:
                raise SnapshotError(f"{manifest}: partition {i} has no float32 rows")
            ann = None
            if graph is not None:
                if labels is None or labels.dtype != np.uint64:
                    raise SnapshotError(f"{manifest}: partition {i} has a graph but no labels")
                usearch_index = usearch_index or _usearch()
                if usearch_index is not None:
                    blob = _read(folder, graph)
                    ann = usearch_index.Index(ndim=dim, **_ann_options(index_options))
                    ann.load(blob)
                    if ann.ndim != dim:
                        raise SnapshotError(f"{manifest}: graph {i} has dimension {ann.ndim}")
            ix = VectorIndex.restore(dim, part["keys"], rows, labels if ann is not None else None,
                                     part["next_label"], ann, part.get("deferred") or (), **index_options)
            index.adopt(part["name"], ix)
    except SnapshotError:
        raise
    except Exception as exc:  # parts that disagree (InvariantError), bad JSON shapes, usearch errors
        raise SnapshotError(f"{manifest}: inconsistent snapshot: {type(exc).__name__}: {exc}") from exc
    if len(index) != head.get("entries"):
        raise SnapshotError(f"{manifest}: {len(index)} entries, the manifest says {head.get('entries')!r}")
    return index, cursor


def _ann_options(index_options: dict[str, Any]) -> dict[str, Any]:
    probe = VectorIndex(1, **index_options)
    return probe.ann_options


def _jsonable(options: dict[str, Any]) -> Any:
    return json.loads(json.dumps(options, sort_keys=True, default=str))
