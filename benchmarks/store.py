"""Embedded store benchmark: single inserts, then single updates, of ~3 KB documents; each write is fsynced.

A write appends only what it changed to the collection's journal, so its time should not grow with the collection.
Prints the mean and median per-write time of the first and last 1,000 of each kind, then one JSON line.
Usage: python benchmarks/store.py [--n 20000] [--folder /tmp/crysloop-store-bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from crysloop.infra.embedded_store import client_class


def document(i: int) -> dict:
    """A candidate-like document of about 3 KB (a structure dict's worth of numbers)."""
    return {
        "_id": i,
        "structure_hash": f"{i:064x}",
        "formula": "NaCl",
        "nsites": 8,
        "sites": [[0.125 * k + i * 1e-6, 0.25, 0.5] for k in range(140)],
        "properties": {"e": -3.2},
    }


def timed(calls) -> list[float]:
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def window(times: list[float]) -> dict:
    head, tail = times[:1000], times[-1000:]
    return {
        "first_1000_mean_ms": 1e3 * statistics.fmean(head),
        "last_1000_mean_ms": 1e3 * statistics.fmean(tail),
        "first_1000_median_ms": 1e3 * statistics.median(head),
        "last_1000_median_ms": 1e3 * statistics.median(tail),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--folder", type=Path, default=None, help="Database folder (default: a temporary one).")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="crysloop-store-bench-"))
    shutil.rmtree(folder, ignore_errors=True)
    client = client_class(folder)()
    items = client["bench"]["items"]
    size = len(json.dumps(document(0)))
    inserts = timed(lambda i=i: items.insert_one(document(i)) for i in range(args.n))
    updates = timed(
        lambda i=i: items.update_one({"_id": i}, {"$set": {"properties.e": -3.0 - i * 1e-5}}) for i in range(args.n)
    )
    start = time.perf_counter()
    client.close()
    close_s = time.perf_counter() - start
    start = time.perf_counter()
    reader = client_class(folder, readonly=True)()
    count = reader["bench"]["items"].count_documents({})
    open_s = time.perf_counter() - start
    reader.close()
    shutil.rmtree(folder, ignore_errors=True)
    result = {
        "n": args.n,
        "document_bytes": size,
        "insert": window(inserts),
        "update": window(updates),
        "insert_total_s": sum(inserts),
        "update_total_s": sum(updates),
        "close_compaction_s": close_s,
        "reopen_s": open_s,
        "documents_after_reopen": count,
    }
    for kind in ("insert", "update"):
        w = result[kind]
        print(
            f"{kind}: first 1000 mean {w['first_1000_mean_ms']:.3f} ms (median {w['first_1000_median_ms']:.3f}), "
            f"last 1000 mean {w['last_1000_mean_ms']:.3f} ms (median {w['last_1000_median_ms']:.3f})"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
