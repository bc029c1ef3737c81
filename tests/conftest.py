"""Shared fixtures: an isolated results database per test and one Prefect test harness per session.

Set CRYSLOOP_TEST_MONGODB_URI to run every database test against a real MongoDB server as well as the
embedded store (each test then uses its own throw-away database on that server).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

_BACKENDS = ["embedded"] + (["mongodb"] if os.environ.get("CRYSLOOP_TEST_MONGODB_URI") else [])


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"test data folder {SHARED_DATA} is missing (it sits beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Settings pointing at a fresh data dir with the embedded database, CHGNet and the CPU."""
    from crysloop.settings import Settings, get_settings

    monkeypatch.setenv("CRYSLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRYSLOOP_MLIP", "chgnet")
    monkeypatch.setenv("CRYSLOOP_DEVICE", "cpu")
    monkeypatch.delenv("CRYSLOOP_MONGODB_URI", raising=False)
    get_settings.cache_clear()
    yield Settings()
    get_settings.cache_clear()


@pytest.fixture(params=_BACKENDS)
def db(request, settings, monkeypatch):
    """A connected, empty results database: embedded, and also a real MongoDB when one is configured."""
    from crysloop.infra import db as dbmod
    from crysloop.settings import Settings, get_settings

    if request.param == "mongodb":
        monkeypatch.setenv("CRYSLOOP_MONGODB_URI", os.environ["CRYSLOOP_TEST_MONGODB_URI"])
        monkeypatch.setenv("CRYSLOOP_DB_NAME", f"crysloop_test_{uuid.uuid4().hex[:8]}")
        get_settings.cache_clear()
        settings = Settings()
    connection = dbmod.connect(settings)
    yield connection
    if connection.backend == "mongodb":
        import mongoengine as me

        me.get_connection().drop_database(settings.db_name)
    dbmod.disconnect()


@pytest.fixture(scope="module")
def single_thread():
    """Tiny cells: one torch and BLAS thread is several times faster than two on a busy 2-core machine."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API and database for flow tests (about 10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
