"""An embedded, serverless MongoDB for single-user runs: mongomock in memory, made durable by a journal on disk.

Each collection is a snapshot (``<name>.json``, canonical extended JSON) plus an append-only journal
(``<name>.journal``). Every write appends one checksummed record of the documents it changed and fsyncs it, so a write
costs what it changed, not the size of the collection. Opening loads the snapshot and replays the journal; a torn last
record (a process killed mid-append) is ignored. When the journal outgrows the snapshot, and on close, the collection
is compacted into a new snapshot (temporary file, fsync, rename, fsync of the folder) whose generation number retires
the old journal, so a crash at any point leaves a state that loads to the last completed write. A write that fails
(full disk, I/O error) is undone on disk and in memory, then raised: nothing reads as stored that is not on disk.

One process may write at a time: the writer holds an exclusive ``flock`` on the database folder for its lifetime;
forked children close their copy of it (and cannot write), so an orphaned child never keeps the database locked.
Readers take a snapshot without the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import threading
import time
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import mongomock
from bson import json_util
from mongomock import helpers
from mongomock.collection import Collection
from mongomock.database import Database
from mongomock.store import CollectionStore

from crysloop.infra import faults

log = logging.getLogger(__name__)

_JSON = json_util.JSONOptions(
    json_mode=json_util.JSONMode.RELAXED, tz_aware=False
)  # floats as JSON numbers (numpy too)
# The C encoder with extended JSON for the BSON types (ObjectId, datetime, ...): many times faster than json_util.dumps
_dumps = functools.partial(
    json.dumps, default=functools.partial(json_util.default, json_options=_JSON), separators=(",", ":")
)


def _extended(document: dict):
    """json.loads hook: only objects whose first key starts with $ are extended JSON ({"$oid": ...}, {"$date": ...})."""
    for key in document:
        return json_util.object_hook(document, _JSON) if key[:1] == "$" else document
    return document


_loads = functools.partial(json.loads, object_hook=_extended)
_WRITES = (
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "replace_one",
    "delete_one",
    "delete_many",
    "find_one_and_update",
    "find_one_and_replace",
    "find_one_and_delete",
    "bulk_write",
    "drop",
)
COMPACT_MIN_BYTES = 8 << 20  # a journal is folded into its snapshot once larger than this and than the snapshot
_READ_RETRIES = 5


class DatabaseLockedError(RuntimeError):
    """Another process is writing to the embedded database."""


class ReadOnlyDatabaseError(RuntimeError):
    """A write was attempted through a read-only connection."""


def _key(doc_id):
    """The key mongomock files a document under (dict ids are hashed)."""
    return helpers.hashdict(doc_id) if isinstance(doc_id, dict) else doc_id


def _encode(record: dict) -> bytes:
    """One journal line: CRC-32 of the payload, a space, the extended-JSON payload (which holds no newline)."""
    payload = _dumps(record).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _decode(line: bytes) -> dict | None:
    """The record of a complete, intact journal line, else ``None``."""
    if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
        return None
    payload = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(payload):
            return None
        return _loads(payload)
    except ValueError:
        return None


def fsync_directory(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` or leave it as it was: temporary file, fsync, rename, fsync of the folder."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


@dataclass
class _Files:
    """The on-disk state of one collection as this client knows it."""

    snapshot: Path
    journal: Path
    generation: int = 0
    snapshot_bytes: int = 0
    journal_bytes: int | None = None  # valid bytes of a journal of this generation; None: write a fresh one
    handle: BinaryIO | None = None  # the journal, open for appending (writer only)

    @property
    def has_records(self) -> bool:
        return self.journal_bytes is not None and self.journal_bytes > len(_encode({"generation": self.generation}))


def _replay(documents: dict, data: bytes, generation: int) -> int | None:
    """Apply the journal ``data`` of ``generation`` to ``documents``; returns its valid length (``None``: stale)."""
    lines = data.splitlines(keepends=True)
    header = _decode(lines[0]) if lines else None
    if header is None or header.get("generation") != generation:
        return None
    valid = len(lines[0])
    for number, line in enumerate(lines[1:], start=2):
        record = _decode(line)
        if record is None:
            if number < len(lines):  # a write that failed and could not be truncated away; it was reported failed
                log.warning("skipping a damaged record at line %d of the journal", number)
                valid += len(line)
            continue  # a torn last record: the process died while appending it
        valid += len(line)
        if record.get("drop"):
            documents.clear()
        for doc in record.get("put", ()):
            documents[_key(doc["_id"])] = doc
        for doc_id in record.get("del", ()):
            documents.pop(_key(doc_id), None)
    return valid


def _read(files: _Files, documents: dict) -> bool:
    """Load snapshot + journal into ``documents`` and ``files``; ``False`` when the collection does not exist.

    A journal newer than its snapshot means a writer compacted between our two reads (read again), or, when it
    stays so, one that was dropped and died between removing the snapshot and the journal (the journal is stale).
    """
    attempt = 0
    while True:
        documents.clear()
        try:
            raw = files.snapshot.read_bytes()
        except FileNotFoundError:
            raw = None
        stored = _loads(raw) if raw is not None else {"generation": 0, "documents": []}
        if isinstance(stored, list):  # the format before the journal
            stored = {"generation": 0, "documents": stored}
        for doc in stored["documents"]:
            documents[_key(doc["_id"])] = doc
        try:
            journal = files.journal.read_bytes()
        except FileNotFoundError:
            journal = b""
        header = _decode(journal.split(b"\n", 1)[0] + b"\n") if journal else None
        if header is not None and header.get("generation", 0) > stored["generation"] and attempt < _READ_RETRIES:
            attempt += 1
            time.sleep(0.01)
            continue
        files.generation, files.snapshot_bytes = stored["generation"], len(raw or b"")
        files.journal_bytes = _replay(documents, journal, files.generation)
        return raw is not None or files.journal_bytes is not None


class _TrackedStore(CollectionStore):
    """A mongomock collection store that notes which document keys a write set or deleted."""

    touched: set | None = None  # keys a write in progress changed
    dropped: bool = False
    writer: int | None = None  # the thread doing that write

    def __setitem__(self, key, val):
        super().__setitem__(key, val)
        if self.touched is not None:
            self.touched.add(key)

    def __delitem__(self, key):
        super().__delitem__(key)
        if self.touched is not None:
            self.touched.add(key)


class _PersistentCollection(Collection):
    """A mongomock collection whose writes are journalled before they return."""

    @property
    def _store(self):
        store = self._db_store[self._name]
        if type(store) is CollectionStore:
            store.__class__ = _TrackedStore
        return store

    def _iter_documents(self, filter):
        store = self._store
        doc_id = filter.get("_id") if isinstance(filter, dict) and len(filter) == 1 else None
        if doc_id is not None and not isinstance(doc_id, (dict, list)):  # by id: a lookup, not a scan
            documents = [store[doc_id]] if doc_id in store else []
        else:
            documents = super()._iter_documents(filter)
        touched = store.touched
        if touched is None or store.writer != threading.get_ident():
            return documents
        return (touched.add(_key(doc["_id"])) or doc for doc in documents)  # updates change documents in place

    def with_options(self, *args, **kwargs):
        other = super().with_options(*args, **kwargs)
        other.__class__ = _PersistentCollection
        return other


def _writer(name: str):
    method = getattr(Collection, name)

    def wrapped(self, *args, **kwargs):
        client: EmbeddedClient = self.database.client
        client._check_writable()
        with client._writing(self.database.name, self.name, self._store):
            return method(self, *args, **kwargs)

    wrapped.__name__ = name
    wrapped.__doc__ = method.__doc__
    return wrapped


for _name in _WRITES:
    setattr(_PersistentCollection, _name, _writer(_name))


class _PersistentDatabase(Database):
    def get_collection(self, name, *args, **kwargs):
        collection = super().get_collection(name, *args, **kwargs)
        collection.__class__ = _PersistentCollection
        return collection

    def drop_collection(self, name_or_collection, *args, **kwargs):
        self.client._check_writable()
        name = getattr(name_or_collection, "name", name_or_collection)
        with self.client._writing(self.name, name, self.get_collection(name)._store, drop=True):
            super().drop_collection(name_or_collection, *args, **kwargs)


class _Write:
    """A context that journals what the writes inside it changed in one collection (outermost write only)."""

    def __init__(self, client: EmbeddedClient, db_name: str, collection: str, store: _TrackedStore, drop: bool):
        self.client, self.db_name, self.collection, self.store, self.drop = client, db_name, collection, store, drop

    def __enter__(self):
        self.client._write_lock.acquire()
        self.outermost = self.store.touched is None
        if self.outermost:
            self.store.touched, self.store.dropped, self.store.writer = set(), False, threading.get_ident()
        self.store.dropped = self.store.dropped or self.drop
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.outermost:
                touched, dropped = self.store.touched, self.store.dropped
                self.store.touched = self.store.writer = None
                if touched or dropped:
                    self.client._commit(self.db_name, self.collection, self.store, touched, dropped)
        finally:
            self.client._write_lock.release()
        return False


_WRITERS: weakref.WeakSet[EmbeddedClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_WRITERS):
        client._forget_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


class EmbeddedClient(mongomock.MongoClient):
    """mongomock client backed by a folder; subclassed per folder by :func:`client_class`."""

    directory: Path
    readonly: bool = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._write_lock = threading.RLock()
        self._lock_file = None
        self._files: dict[tuple[str, str], _Files] = {}
        self._owner = os.getpid()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.readonly:
            self._acquire_writer_lock()
            _WRITERS.add(self)
        self._load()

    def get_database(self, name=None, *args, **kwargs):
        database = super().get_database(name, *args, **kwargs)
        database.__class__ = _PersistentDatabase
        return database

    def _acquire_writer_lock(self) -> None:
        path = self.directory / "LOCK"
        handle = open(path, "a+")  # noqa: SIM115 - held for the writer's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DatabaseLockedError(
                f"The embedded database at {self.directory} is already open for writing by {holder}. "
                "It allows one writer at a time: wait for that run to finish, or set CRYSLOOP_MONGODB_URI "
                "to a MongoDB server (see docker-compose.yml) for concurrent runs."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._lock_file = handle

    def _forget_in_child(self) -> None:
        """In a forked child: drop (never unlock) the inherited lock and journals, so the parent alone holds them.

        Each descriptor is pointed at /dev/null rather than closed, so the file objects stay valid and no later
        close can hit a descriptor number the child has reused.
        """
        if os.getpid() == self._owner:
            return
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for handle in [self._lock_file] + [files.handle for files in self._files.values()]:
                if handle is not None and not handle.closed:
                    os.dup2(devnull, handle.fileno())
        finally:
            os.close(devnull)
        self._lock_file = None
        for files in self._files.values():
            files.handle = None
        self.readonly = True

    def _check_writable(self) -> None:
        if self.readonly or os.getpid() != self._owner:
            raise ReadOnlyDatabaseError(
                f"the embedded database at {self.directory} was opened read-only"
                + ("" if os.getpid() == self._owner else " (in this forked process)")
            )

    def _files_for(self, db_name: str, collection: str) -> _Files:
        key = (db_name, collection)
        if key not in self._files:
            folder = self.directory / db_name
            self._files[key] = _Files(folder / f"{collection}.json", folder / f"{collection}.journal")
        return self._files[key]

    def _load(self) -> None:
        for db_dir in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            names = set()
            for path in db_dir.iterdir():
                if path.suffix == ".tmp" and not self.readonly:
                    path.unlink(missing_ok=True)  # left by a process killed while replacing a file
                elif path.suffix in (".json", ".journal"):
                    names.add(path.name.removesuffix(path.suffix))
            for name in sorted(names):
                self._load_collection(db_dir.name, name)

    def _load_collection(self, db_name: str, collection: str) -> None:
        store = self._store[db_name][collection]
        if type(store) is CollectionStore:
            store.__class__ = _TrackedStore
        documents: dict = {}
        if _read(self._files_for(db_name, collection), documents):
            store.create()
        with store._rwlock.writer():
            store._documents.clear()
            store._documents.update(documents)

    def _writing(self, db_name: str, collection: str, store: _TrackedStore, drop: bool = False) -> _Write:
        return _Write(self, db_name, collection, store, drop)

    def _journal(self, files: _Files) -> BinaryIO:
        """The journal of the current generation, open for appending (a torn tail cut off, a stale one replaced)."""
        if files.handle is None:
            files.snapshot.parent.mkdir(parents=True, exist_ok=True)
            if files.journal_bytes is None:
                header = _encode({"generation": files.generation})
                atomic_write(files.journal, header)
                files.journal_bytes = len(header)
            else:
                os.truncate(files.journal, files.journal_bytes)
            files.handle = open(files.journal, "ab")  # noqa: SIM115 - kept open, closed with the store
        return files.handle

    def _commit(self, db_name: str, collection: str, store: _TrackedStore, touched: set, dropped: bool) -> None:
        """Append the changed documents to the journal and fsync; on failure undo the write in memory and on disk."""
        files = self._files_for(db_name, collection)
        record: dict = {"drop": 1} if dropped else {}
        present = [key for key in touched if key in store]
        record["put"] = [store[key] for key in present]
        record["del"] = [key for key in touched if key not in store]
        before = files.journal_bytes
        try:
            handle = self._journal(files)
            before = files.journal_bytes
            line = _encode(record)
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            self._undo(db_name, collection, files, before)
            raise
        files.journal_bytes += len(line)
        if files.journal_bytes > max(COMPACT_MIN_BYTES, files.snapshot_bytes):
            try:
                self._compact(db_name, collection)
            except OSError as exc:  # the write itself is in the journal; compaction is retried later
                log.warning("could not compact %s.%s: %s", db_name, collection, exc)
        faults.after_write()

    def _undo(self, db_name: str, collection: str, files: _Files, journal_bytes: int | None) -> None:
        """After a failed write: cut the journal back, then reload the collection from what is on disk."""
        if files.handle is not None:
            with contextlib.suppress(OSError):  # the handle is dropped either way; a new one is opened on next write
                files.handle.close()
            files.handle = None
        if journal_bytes is not None:
            with contextlib.suppress(OSError):  # a partial record left behind is torn, and skipped when read
                os.truncate(files.journal, journal_bytes)
        self._load_collection(db_name, collection)

    def _compact(self, db_name: str, collection: str) -> None:
        """Fold the journal into a new snapshot of the next generation, then start that generation's journal."""
        files = self._files_for(db_name, collection)
        store = self._store[db_name][collection]
        generation = files.generation + 1
        if files.handle is not None:
            files.handle.close()
            files.handle = None
        if not store.is_created:
            files.snapshot.unlink(missing_ok=True)  # snapshot first: a journal without it is of generation 0's past
            files.journal.unlink(missing_ok=True)
            fsync_directory(files.snapshot.parent)
            files.generation, files.snapshot_bytes, files.journal_bytes = 0, 0, None
            return
        data = _dumps({"generation": generation, "documents": list(store.documents)})
        atomic_write(files.snapshot, data.encode())
        files.generation, files.snapshot_bytes, files.journal_bytes = generation, len(data), None
        self._journal(files)

    def close(self) -> None:
        with self._write_lock:
            if self._lock_file is not None and os.getpid() == self._owner:
                for (db_name, collection), files in self._files.items():
                    if files.has_records:
                        try:
                            self._compact(db_name, collection)
                        except OSError as exc:  # the journal stays, and is replayed on the next open
                            log.warning("could not compact %s.%s on close: %s", db_name, collection, exc)
                for files in self._files.values():
                    if files.handle is not None:
                        files.handle.close()
                        files.handle = None
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
                self._lock_file = None
        super().close()


def client_class(directory: Path, readonly: bool = False) -> type[EmbeddedClient]:
    """A client class bound to ``directory``, for ``mongoengine.connect(mongo_client_class=...)``."""
    return type("EmbeddedClient", (EmbeddedClient,), {"directory": Path(directory), "readonly": readonly})
