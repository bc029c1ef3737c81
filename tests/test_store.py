"""Storing candidates: tolerance-based deduplication, round links, and concurrent writers on the MongoDB code path."""

from __future__ import annotations

import threading
from functools import lru_cache

import mongoengine as me
import mongomock
import pytest
from pymatgen.core import Lattice, Structure

from crysloop.infra import store
from crysloop.infra.campaign import campaign_candidate_ids, round_candidates, round_samples
from crysloop.infra.documents import ALL_DOCUMENTS, Candidate, RoundSample
from crysloop.infra.store import NewCandidate, add_candidates, record_round_samples


@lru_cache
def _rocksalt_sites() -> tuple[list[int], list[list[float]]]:
    """Which of the two elements sits where in the conventional rocksalt cell (from_spacegroup is slow)."""
    cell = Structure.from_spacegroup("Fm-3m", Lattice.cubic(1.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return [0 if site.specie.symbol == "Na" else 1 for site in cell], cell.frac_coords.tolist()


def rocksalt(formula: tuple[str, str], a: float) -> Structure:
    which, coords = _rocksalt_sites()
    return Structure(Lattice.cubic(a), [formula[i] for i in which], coords)


def nacl(a: float) -> Structure:
    return rocksalt(("Na", "Cl"), a)


def test_distinct_cells_are_two_crystals_and_near_copies_one(db):
    report = add_candidates([NewCandidate(nacl(5.60)), NewCandidate(nacl(5.64))])
    assert (report.inserted, report.existing) == (2, 0), "NaCl at 5.60 and 5.64 A are different crystals"
    # KCl primitive cells of 4.4498 and 4.4502 A sit on both sides of a rounding boundary: the same crystal
    a = 4.45 * 2**0.5
    near = add_candidates(
        [NewCandidate(rocksalt(("K", "Cl"), a - 0.0003)), NewCandidate(rocksalt(("K", "Cl"), a + 0.0003))]
    )
    assert (near.inserted, near.existing) == (1, 1) and near.hashes[0] == near.hashes[1]
    again = add_candidates([NewCandidate(nacl(5.6405).make_supercell([1, 1, 2]))])
    assert (again.inserted, again.existing) == (0, 1) and again.hashes[0] == report.hashes[1]
    assert Candidate.objects.count() == 3


def test_a_candidate_from_an_earlier_campaign_is_linked_to_the_round_that_sampled_it(db):
    first = add_candidates([NewCandidate(nacl(5.64))], campaign="old", round_index=0)
    sampled = [
        NewCandidate(nacl(5.64)),
        NewCandidate(rocksalt(("K", "Cl"), 6.29)),
        NewCandidate(nacl(2.0)),
        NewCandidate(nacl(5.64)),
    ]
    valid = [True, True, False, True]
    report = add_candidates([s for s, ok in zip(sampled, valid) if ok], campaign="new", round_index=0)
    assert (report.inserted, report.existing) == (1, 2)
    stored = iter(report.hashes)
    record_round_samples("new", 0, sampled, valid, [next(stored) if ok else None for ok in valid])
    record_round_samples(
        "new",
        0,
        sampled,
        valid,
        [h if ok else None for h, ok in zip([report.hashes[0], report.hashes[1], None, report.hashes[2]], valid)],
    )  # a resumed round: same links
    assert RoundSample.objects(campaign="new").count() == 4
    assert [c.formula for c in round_candidates("new", 0)] == ["NaCl", "KCl"]
    assert round_candidates("new", 0)[0].structure_hash == first.hashes[0]
    assert len(campaign_candidate_ids("new")) == 2
    samples = round_samples("new", 0, "chgnet")
    assert len(samples) == 4 and samples[2][0].lattice.a == pytest.approx(2.0)
    # the round's screening takes the linked candidate too, and files its result under the campaign screening it
    from crysloop.infra.screening import pending_candidates

    queued = pending_candidates("new", "chgnet")
    assert sorted(i.formula for i in queued) == ["KCl", "NaCl"] and {i.campaign for i in queued} == {"new"}


@pytest.fixture
def mongomock_server(monkeypatch):
    """mongoengine connected to a mongomock server (not the embedded store): the real-MongoDB code path."""
    me.disconnect()
    for document in ALL_DOCUMENTS:
        document._collection = None
    me.connect(db="concurrent", host="mongodb://localhost", mongo_client_class=mongomock.MongoClient)
    for document in ALL_DOCUMENTS:
        document.ensure_indexes()
    yield
    me.disconnect()
    for document in ALL_DOCUMENTS:
        document._collection = None


def test_two_concurrent_writers_store_each_structure_once(mongomock_server, monkeypatch):
    crystals = [
        rocksalt(pair, a)
        for pair, a in [
            (("Na", "Cl"), 5.64),
            (("K", "Cl"), 6.29),
            (("Li", "F"), 4.03),
            (("Mg", "O"), 4.21),
            (("Ca", "O"), 4.81),
            (("Na", "F"), 4.63),
        ]
    ]
    batches = [[crystals[i] for i in (0, 1, 2, 3)], [crystals[i] for i in (2, 4, 1, 5)]]  # overlap in the middle
    both_read = threading.Barrier(2)
    server = threading.Lock()
    insert = store._insert_unordered

    def racing_insert(docs):  # both writers decided what is new before either wrote
        both_read.wait(timeout=60)
        with server:
            return insert(docs)

    monkeypatch.setattr(store, "_insert_unordered", racing_insert)
    reports, errors = [None, None], []

    def writer(i):
        try:
            reports[i] = add_candidates([NewCandidate(s) for s in batches[i]], campaign=f"w{i}")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    hashes = [c.structure_hash for c in Candidate.objects]
    assert len(hashes) == len(set(hashes)) == 6, "each structure stored once, none lost after a duplicate"
    assert sum(r.inserted for r in reports) == 6
    assert all(r.inserted + r.existing == 4 for r in reports)
    assert {c.formula for c in Candidate.objects} == {"NaCl", "KCl", "LiF", "MgO", "CaO", "NaF"}
