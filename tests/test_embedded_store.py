"""The embedded store on disk: journalled writes, replay, torn records, failed writes, crashes, forked children."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crysloop.infra import embedded_store as embedded


def open_client(folder: Path, readonly: bool = False) -> embedded.EmbeddedClient:
    return embedded.client_class(folder, readonly=readonly)()


def docs(folder: Path) -> dict:
    """_id -> document as a fresh read-only client sees the folder."""
    client = open_client(folder, readonly=True)
    try:
        return {d["_id"]: d for d in client["db"]["items"].find()}
    finally:
        client.close()


def payload(i: int) -> dict:
    return {"_id": i, "name": f"item-{i}", "blob": "x" * 3000}


def written_bytes() -> int:
    """Bytes this process has passed to write() so far (Linux /proc accounting)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def test_writes_replay_from_the_journal_and_compact_on_close(tmp_path):
    client = open_client(tmp_path)
    items = client["db"]["items"]
    items.insert_many([payload(i) for i in range(5)])
    items.update_one({"_id": 2}, {"$set": {"name": "two"}})
    items.delete_one({"_id": 4})
    items.insert_one(payload(9))
    # a reader sees every acknowledged write before any compaction (the journal is replayed)
    assert (tmp_path / "db" / "items.journal").exists()
    seen = docs(tmp_path)
    assert sorted(seen) == [0, 1, 2, 3, 9] and seen[2]["name"] == "two"
    client.close()
    snapshot = json.loads((tmp_path / "db" / "items.json").read_text())
    assert sorted(d["_id"] for d in snapshot["documents"]) == [0, 1, 2, 3, 9]
    journal = (tmp_path / "db" / "items.journal").read_bytes().splitlines()
    assert len(journal) == 1, "compaction leaves only the header of the next generation"
    assert docs(tmp_path) == seen


def test_dropped_collection_stays_dropped(tmp_path):
    client = open_client(tmp_path)
    client["db"]["items"].insert_one(payload(1))
    client["db"]["items"].drop()
    assert docs(tmp_path) == {}
    client.close()
    assert "items" not in open_client(tmp_path, readonly=True)["db"].list_collection_names()


def test_a_drop_interrupted_between_its_two_unlinks_stays_dropped(tmp_path):
    client = open_client(tmp_path)
    client["db"]["items"].insert_many([payload(i) for i in range(3)])
    client.close()  # snapshot and journal of generation 1
    (tmp_path / "db" / "items.json").unlink()  # the drop's compaction died before removing the journal
    assert docs(tmp_path) == {}
    writer = open_client(tmp_path)
    writer["db"]["items"].insert_one(payload(7))
    writer.close()
    assert sorted(docs(tmp_path)) == [7]


def test_a_write_costs_what_it_changed_not_the_collection_size(tmp_path):
    client = open_client(tmp_path)
    items = client["db"]["items"]
    items.insert_one(payload(0))
    start = written_bytes()
    items.update_one({"_id": 0}, {"$set": {"name": "first"}})
    small = written_bytes() - start
    for i in range(1, 1500):
        items.insert_one(payload(i))
    start = written_bytes()
    items.update_one({"_id": 700}, {"$set": {"name": "late"}})
    large = written_bytes() - start
    client.close()
    assert small < 2 * 3100 and large < 2 * 3100, (small, large)  # one document's worth, at 1 or 1,500 documents
    assert docs(tmp_path)[700]["name"] == "late"


def test_torn_last_record_is_ignored_and_cut_off(tmp_path):
    client = open_client(tmp_path)
    client["db"]["items"].insert_many([payload(i) for i in range(3)])
    journal = tmp_path / "db" / "items.journal"
    good = journal.read_bytes()
    # what a process killed in the middle of its next append leaves behind
    client._files[("db", "items")].handle.write(embedded._encode({"put": [payload(7)], "del": []})[:-40])
    client._files[("db", "items")].handle.flush()
    client._lock_file.close()  # the kill releases the lock; nothing else is cleaned up
    client._lock_file = None
    assert sorted(docs(tmp_path)) == [0, 1, 2]
    writer = open_client(tmp_path)
    writer["db"]["items"].insert_one(payload(5))
    assert journal.read_bytes().startswith(good)
    assert sorted(docs(tmp_path)) == [0, 1, 2, 5]
    writer.close()
    assert sorted(docs(tmp_path)) == [0, 1, 2, 5]


class _DiskFull:
    """os.fsync that fails with ENOSPC while ``full`` is set."""

    def __init__(self):
        self.full = False
        self.real = os.fsync

    def __call__(self, fd):
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real(fd)


def test_failed_write_is_undone_in_memory_and_on_disk(tmp_path, monkeypatch):
    disk = _DiskFull()
    monkeypatch.setattr(embedded.os, "fsync", disk)
    client = open_client(tmp_path)
    items = client["db"]["items"]
    items.insert_one(payload(1))
    disk.full = True
    with pytest.raises(OSError, match="No space"):
        items.insert_one(payload(2))
    with pytest.raises(OSError, match="No space"):
        items.update_one({"_id": 1}, {"$set": {"name": "changed"}})
    # a retrying task must not find the failed writes as if they had been stored
    assert [d["_id"] for d in items.find()] == [1] and items.find_one({"_id": 1})["name"] == "item-1"
    assert not list((tmp_path / "db").glob("*.tmp"))
    disk.full = False
    items.insert_one(payload(2))
    assert sorted(docs(tmp_path)) == [1, 2] and docs(tmp_path)[1]["name"] == "item-1"
    disk.full = True
    client.close()  # compaction fails (a warning): the journal keeps everything
    assert not list((tmp_path / "db").glob("*.tmp"))
    disk.full = False
    assert sorted(docs(tmp_path)) == [1, 2]


_CRASHING_WRITER = """
import builtins, os, sys
from crysloop.infra import embedded_store as embedded
embedded.COMPACT_MIN_BYTES = 0  # compact after every write: every file replacement is a place to die
folder, die_at = sys.argv[1], int(sys.argv[2])
calls = 0

def point():
    global calls
    calls += 1
    return calls == die_at

real_fsync, real_replace, real_open = os.fsync, os.replace, builtins.open

def fsync(fd):
    if point():
        os._exit(137)
    return real_fsync(fd)

def replace(a, b):
    if point():
        os._exit(137)
    return real_replace(a, b)

class Torn:
    def __init__(self, handle):
        self.handle = handle
    def write(self, data):
        if point():
            self.handle.write(data[: len(data) // 2]); self.handle.flush(); os._exit(137)
        return self.handle.write(data)
    def __getattr__(self, name):
        return getattr(self.handle, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

def open_(path, mode="r", *args, **kwargs):
    handle = real_open(path, mode, *args, **kwargs)
    return Torn(handle) if str(path).startswith(folder) and ("w" in mode or "a" in mode) else handle

os.fsync, os.replace, builtins.open = fsync, replace, open_
client = embedded.client_class(folder)()
items = client["db"]["items"]
for i in range(3):
    items.insert_one({"_id": i, "v": "x" * 100})
    items.update_one({"_id": i}, {"$set": {"v": "done"}})
    print(i, flush=True)
client.close()
print("closed", flush=True)
"""


def test_a_writer_killed_at_any_write_fsync_or_rename_loses_nothing_acknowledged(tmp_path):
    """Kill points are the n-th write (torn in half), fsync or rename; every acknowledged document must survive."""
    script = tmp_path / "writer.py"
    script.write_text(_CRASHING_WRITER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    die_at, survived = 1, 0
    while True:
        folder = tmp_path / f"db-{die_at}"
        run = subprocess.run(
            [sys.executable, str(script), str(folder), str(die_at)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if run.returncode == 0:
            break
        assert run.returncode == 137, run.stderr
        acknowledged = [int(line) for line in run.stdout.split()]
        stored = docs(folder)
        assert set(acknowledged) <= set(stored), f"kill point {die_at} lost acknowledged writes"
        assert all(stored[i]["v"] == "done" for i in acknowledged)
        assert len(stored) <= len(acknowledged) + 1
        writer = open_client(folder)  # a writer opens it again, and cleans up behind the dead one
        assert not list(folder.rglob("*.tmp"))
        writer.close()
        survived += 1
        die_at += 1
    print(f"{survived} kill points")
    assert survived > 40, "the writer ran past every kill point"
    assert "closed" in run.stdout and sorted(docs(folder)) == list(range(3))


def test_a_forked_child_does_not_keep_the_database_locked(tmp_path):
    """Fork a child that holds nothing, kill -9 the parent: the database can be opened for writing."""
    note = tmp_path / "child.txt"
    code = textwrap.dedent(f"""
        import os, time
        from crysloop.infra import embedded_store as embedded
        client = embedded.client_class({str(tmp_path / "store")!r})()
        client["db"]["items"].insert_one({{"_id": 1}})
        pid = os.fork()
        if pid == 0:
            try:
                client["db"]["items"].insert_one({{"_id": 2}})
            except embedded.ReadOnlyDatabaseError:
                open({str(note)!r}, "w").write("child cannot write")
            time.sleep(60)
            os._exit(0)
        print(pid, flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 30
    while not (note.exists() and note.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert note.read_text() == "child cannot write"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        time.sleep(0.2)
        os.kill(child, 0)  # the orphan is still alive
        writer = open_client(tmp_path / "store")
        assert [d["_id"] for d in writer["db"]["items"].find()] == [1]
        writer.close()
    finally:
        os.kill(child, signal.SIGKILL)
