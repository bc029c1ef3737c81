"""Connecting to the results database: a MongoDB server when a URI is set, otherwise the embedded on-disk store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import mongoengine as me

from crysloop.infra import embedded_store as embedded
from crysloop.infra.documents import ALL_DOCUMENTS
from crysloop.settings import Settings, get_settings

DatabaseLockedError = embedded.DatabaseLockedError
ReadOnlyDatabaseError = embedded.ReadOnlyDatabaseError


@dataclass(frozen=True)
class Connection:
    """What :func:`connect` connected to, for messages and status output."""

    backend: str  # "mongodb" or "embedded"
    location: str  # redacted URI or folder
    db_name: str
    readonly: bool


_current: Connection | None = None


def _redact(uri: str) -> str:
    if "@" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def connect(settings: Settings | None = None, readonly: bool = False) -> Connection:
    """Register the default mongoengine connection; the embedded store takes the writer lock unless ``readonly``."""
    settings = settings or get_settings()
    disconnect()
    if settings.mongodb_uri:
        me.connect(db=settings.db_name, host=settings.mongodb_uri, serverSelectionTimeoutMS=5000, tz_aware=False)
        connection = Connection("mongodb", _redact(settings.mongodb_uri), settings.db_name, readonly)
    else:
        client_class = embedded.client_class(settings.db_dir, readonly=readonly)
        me.connect(db=settings.db_name, host="localhost", mongo_client_class=client_class)
        connection = Connection("embedded", str(settings.db_dir), settings.db_name, readonly)
    if not readonly:
        for document in ALL_DOCUMENTS:
            document.ensure_indexes()
    global _current
    _current = connection
    return connection


def disconnect() -> None:
    """Close the default connection, releasing the embedded writer lock."""
    from mongoengine.connection import _connections

    global _current
    _current = None
    client = _connections.get(me.DEFAULT_CONNECTION_NAME)
    me.disconnect()
    if client is not None:
        client.close()
    for document in ALL_DOCUMENTS:
        document._collection = None


def current() -> Connection | None:
    """The connection made by :func:`connect`, or ``None`` when disconnected."""
    return _current


@contextmanager
def database(settings: Settings | None = None, readonly: bool = False) -> Iterator[Connection]:
    """``with database(): ...`` connects for the block and disconnects after it.

    Re-entrant: inside an open connection (a flow called from a flow, a test's ``db`` fixture) it reuses that
    connection and leaves it open.
    """
    if _current is not None:
        yield _current
        return
    connection = connect(settings, readonly=readonly)
    try:
        yield connection
    finally:
        disconnect()
