"""An embedded, serverless MongoDB for single-user runs: mongomock in memory, persisted to disk after every write.

Each collection lives in one canonical extended-JSON file that is replaced atomically (write to a temporary file,
fsync, rename), so a killed process leaves either the old or the new file. One process may write at a time: the
writer holds an exclusive ``flock`` on the database folder for its lifetime; readers take a snapshot without it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import mongomock
from bson import json_util
from mongomock.collection import Collection
from mongomock.database import Database

_JSON = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=False)  # floats as JSON numbers (numpy too)
_WRITES = (
    "insert_one", "insert_many", "update_one", "update_many", "replace_one", "delete_one", "delete_many",
    "find_one_and_update", "find_one_and_replace", "find_one_and_delete", "bulk_write", "drop",
)  # fmt: skip


class DatabaseLockedError(RuntimeError):
    """Another process is writing to the embedded database."""


class ReadOnlyDatabaseError(RuntimeError):
    """A write was attempted through a read-only connection."""


class _PersistentCollection(Collection):
    """A mongomock collection that saves itself after each write."""

    def with_options(self, *args, **kwargs):
        other = super().with_options(*args, **kwargs)
        other.__class__ = _PersistentCollection
        return other


def _writer(name: str):
    method = getattr(Collection, name)

    def wrapped(self, *args, **kwargs):
        client: EmbeddedClient = self.database.client
        client._check_writable()
        with client._write_lock:
            result = method(self, *args, **kwargs)
            client._persist(self.database.name, self.name)
        return result

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
        with self.client._write_lock:
            super().drop_collection(name_or_collection, *args, **kwargs)
            self.client._persist(self.name, name)


class EmbeddedClient(mongomock.MongoClient):
    """mongomock client backed by a folder; subclassed per folder by :func:`client_class`."""

    directory: Path
    readonly: bool = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._write_lock = threading.RLock()
        self._lock_file = None
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.readonly:
            self._acquire_writer_lock()
        self._load()

    def get_database(self, name=None, *args, **kwargs):
        database = super().get_database(name, *args, **kwargs)
        database.__class__ = _PersistentDatabase
        return database

    def _acquire_writer_lock(self) -> None:
        path = self.directory / "LOCK"
        handle = open(path, "a+")
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

    def _check_writable(self) -> None:
        if self.readonly:
            raise ReadOnlyDatabaseError(f"the embedded database at {self.directory} was opened read-only")

    def _load(self) -> None:
        for db_dir in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            store = self._store[db_dir.name]
            for path in sorted(db_dir.glob("*.json")):
                docs = json_util.loads(path.read_text(), json_options=_JSON)
                collection = store[path.stem]
                collection.create()
                for doc in docs:
                    collection[doc["_id"]] = doc

    def _persist(self, db_name: str, collection_name: str) -> None:
        db_dir = self.directory / db_name
        db_dir.mkdir(parents=True, exist_ok=True)
        path = db_dir / f"{collection_name}.json"
        store = self._store[db_name]
        if collection_name not in store or not store[collection_name].is_created:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w") as handle:
            handle.write(json_util.dumps(list(store[collection_name].documents), json_options=_JSON))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def close(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
        super().close()


def client_class(directory: Path, readonly: bool = False) -> type[EmbeddedClient]:
    """A client class bound to ``directory``, for ``mongoengine.connect(mongo_client_class=...)``."""
    return type("EmbeddedClient", (EmbeddedClient,), {"directory": Path(directory), "readonly": readonly})
