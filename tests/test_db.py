"""Results database: idempotent inserts, persistence across processes, one writer, queries and exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from crysloop.data.datasets import read_structures
from crysloop.errors import InputError
from crysloop.infra import db as dbmod
from crysloop.infra.documents import Campaign, Candidate, DFTJob, ScreeningResult
from crysloop.infra.export import export_candidates
from crysloop.infra.queries import CandidateFilter, find_candidates, query
from crysloop.infra.store import NewCandidate, add_candidates


def nacl(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def gan() -> Structure:
    return Structure.from_spacegroup(
        "P6_3mc", Lattice.hexagonal(3.19, 5.19), ["Ga", "N"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]]
    )


def test_reinserting_is_a_noop_even_as_supercell_or_rotated(db):
    first = add_candidates([NewCandidate(nacl()), NewCandidate(gan())], campaign="c1", round_index=0)
    assert (first.inserted, first.existing) == (2, 0)
    supercell = nacl().make_supercell([2, 1, 1])
    shifted = nacl().copy()
    shifted.translate_sites(range(len(shifted)), [0.13, 0.07, 0.21])
    again = add_candidates([NewCandidate(supercell), NewCandidate(shifted), NewCandidate(nacl(5.80))], campaign="c1")
    assert (again.inserted, again.existing) == (1, 2)  # the expanded 5.80 A cell is a different structure
    assert Candidate.objects.count() == 3
    assert again.hashes[0] == first.hashes[0] == again.hashes[1]


def test_duplicates_within_one_batch_are_stored_once(db):
    report = add_candidates([NewCandidate(gan()), NewCandidate(gan())])
    assert (report.inserted, report.existing) == (1, 1)
    candidate = Candidate.objects.get()
    assert candidate.formula == "GaN" and candidate.chemsys == "Ga-N" and candidate.elements == ["Ga", "N"]
    assert StructureMatcher().fit(Structure.from_dict(candidate.structure), gan())


def test_unique_index_guards_direct_inserts(db):
    add_candidates([NewCandidate(gan())])
    from mongoengine.errors import NotUniqueError

    with pytest.raises(NotUniqueError):
        Candidate(**{k: v for k, v in Candidate.objects.get().to_mongo().to_dict().items() if k != "_id"}).save()


def test_dft_state_machine_rejects_illegal_transitions(db):
    add_candidates([NewCandidate(gan())])
    job = DFTJob(candidate=Candidate.objects.get(), preset="crysvcd")
    job.save()
    with pytest.raises(ValueError, match="pending -> completed"):
        job.transition("completed")
    job.transition("running")
    job.transition("failed", error="ZBRENT")
    job.transition("pending")
    job.save()
    assert DFTJob.objects.get().errors == ["ZBRENT"]


def _child(code: str, settings) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process on the same data directory."""
    env = {**os.environ, "CRYSLOOP_DATA_DIR": str(settings.data_dir)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env=env
    )


def test_embedded_data_survives_the_process_and_refuses_a_second_writer(settings):
    dbmod.connect(settings)
    add_candidates([NewCandidate(nacl()), NewCandidate(gan())], campaign="persist")
    Campaign(name="persist").save()
    Campaign.objects(name="persist").update(set__status="running")

    second = _child("from crysloop.infra.db import connect; connect()", settings)
    assert second.returncode != 0
    assert "already open for writing" in second.stderr and "CRYSLOOP_MONGODB_URI" in second.stderr

    reader = _child(
        """
        from crysloop.infra.db import connect
        from crysloop.infra.documents import Campaign, Candidate
        connect(readonly=True)
        print(Candidate.objects(campaign="persist").count(), Campaign.objects.get(name="persist").status)
    """,
        settings,
    )
    assert reader.stdout.split() == ["2", "running"], reader.stderr
    dbmod.disconnect()

    writer = _child(
        """
        from crysloop.infra.db import connect
        from crysloop.infra.documents import Candidate
        connect()
        Candidate.objects(formula="NaCl").delete()
        print(Candidate.objects.count())
    """,
        settings,
    )
    assert writer.stdout.strip() == "1", writer.stderr
    dbmod.connect(settings)
    assert [c.formula for c in Candidate.objects] == ["GaN"]
    dbmod.disconnect()


def test_readonly_connection_refuses_writes(settings):
    with dbmod.database(settings, readonly=True), pytest.raises(dbmod.ReadOnlyDatabaseError):
        Campaign(name="x").save()


@pytest.fixture
def populated(db, shared_data):
    records = read_structures(shared_data / "mp_20_sample" / "val.csv.gz", progress=False)[:30]
    add_candidates(
        [NewCandidate(r.structure, source="dataset", dataset="mp20", material_id=r.material_id) for r in records[:10]]
    )
    add_candidates([NewCandidate(r.structure) for r in records[10:]], campaign="run-a", round_index=1)
    generated = list(Candidate.objects(campaign="run-a"))
    for i, candidate in enumerate(generated):
        ScreeningResult(
            candidate=candidate,
            mlip="chgnet",
            campaign="run-a",
            formula=candidate.formula,
            e_above_hull=0.02 * i,
            phonon_stable=i % 2 == 0,
            relaxed_structure=candidate.structure,
        ).save()
    DFTJob(candidate=generated[0], campaign="run-a", preset="crysvcd", state="pending").save()
    return records


def test_queries_filter_by_campaign_chemistry_stability_and_dft(populated):
    assert len(query(CandidateFilter(campaign="run-a", limit=None))) == 20
    assert all(r.source == "dataset" for r in query(CandidateFilter(campaign=None, limit=None)) if r.campaign is None)
    stable = query(CandidateFilter(campaign="run-a", ehull_max=0.1, limit=None))
    assert len(stable) == 6 and all(r.e_above_hull <= 0.1 for r in stable)
    both = query(CandidateFilter(ehull_max=0.1, phonon_stable=True, limit=None))
    assert len(both) == 3 and all(r.phonon_stable for r in both)
    assert [r.dft_state for r in query(CandidateFilter(dft_state="pending"))] == ["pending"]
    uncovered = ScreeningResult.objects(e_above_hull=0.0).first()
    uncovered.update(hull_covered=False, stable=None)  # its system has no known compound: stability unknown
    assert len(query(CandidateFilter(campaign="run-a", ehull_max=0.1, limit=None))) == 5
    formula = populated[12].structure.composition.reduced_formula
    assert {r.formula for r in query(CandidateFilter(formula=formula))} == {formula}
    element = populated[12].structure.composition.elements[0].symbol
    assert all(element in r.chemsys.split("-") for r in query(CandidateFilter(elements=(element,), limit=None)))
    assert len(query(CandidateFilter(limit=5))) == 5
    with pytest.raises(InputError, match="unknown element"):
        query(CandidateFilter(elements=("Qq",)))
    with pytest.raises(InputError, match="formula"):
        query(CandidateFilter(formula="Na(Cl"))


@pytest.mark.parametrize(
    "fmt,name", [("cif", "cifs"), ("extxyz", "out.extxyz"), ("csv", "out.csv"), ("json", "out.json")]
)
def test_export_formats_read_back(populated, tmp_path, fmt, name):
    candidates = list(find_candidates(CandidateFilter(campaign="run-a", limit=None)))
    written = export_candidates(candidates, tmp_path / name, fmt)
    if fmt == "json":
        payload = json.loads(written.read_text())
        assert len(payload) == 20 and {"formula", "e_above_hull", "structure"} <= set(payload[0])
        return
    back = read_structures(written, progress=False)
    assert len(back) == 20
    assert sorted(r.structure.composition.reduced_formula for r in back) == sorted(c.formula for c in candidates)
    if fmt in ("csv", "extxyz"):
        assert any(r.properties.get("e_above_hull") is not None for r in back)
