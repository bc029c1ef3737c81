"""Materials Project hull references, MP2020 corrections, coverage bookkeeping and honest stability labels."""

from __future__ import annotations

import csv
import gzip

import pytest
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from crysloop.campaign.config import LabelConfig
from crysloop.campaign.stability import stability_class, stability_labels
from crysloop.campaign.statistics import round_statistics
from crysloop.screening.hull import build_phase_diagram, energy_above_hull
from crysloop.screening.mp_references import corrected_energy, mp2020_entry, mp_hubbards, table_entries


def corundum_fe2o3() -> Structure:
    return Structure.from_spacegroup(
        "R-3c", Lattice.hexagonal(5.035, 13.75), ["Fe", "O"], [[0, 0, 0.3553], [0.3059, 0, 0.25]]
    )


def test_oxide_with_a_u_element_gets_the_mp2020_corrections():
    """Fe2O3 is a GGA+U oxide in MP: the entry gets the oxide anion correction and Fe's U correction."""
    structure = corundum_fe2o3()
    assert mp_hubbards(structure.composition) == {"Fe": 5.3}
    entry = mp2020_entry(structure, -100.0)
    names = {adjustment.name for adjustment in entry.energy_adjustments}
    assert any("oxide" in n for n in names) and any("Fe" in n for n in names)
    n_fe, n_o = structure.composition["Fe"], structure.composition["O"]
    # MP2020 fitted values: oxide -0.687 eV per O, Fe (GGA+U) -2.256 eV per Fe; the uncertainties are small
    assert entry.correction == pytest.approx(-0.687 * n_o - 2.256 * n_fe, abs=0.01 * (n_o + n_fe))
    assert corrected_energy(structure, -100.0, "sevenn-l3i5") == pytest.approx(-100.0 + entry.correction)
    assert corrected_energy(structure, -100.0, "chgnet") == -100.0  # CHGNet predicts corrected energies


def test_sulfide_without_u_gets_only_its_anion_correction():
    structure = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Ca", "S"], [[0, 0, 0], [0.5] * 3])
    assert mp_hubbards(structure.composition) == {}
    entry = mp2020_entry(structure, -50.0)
    assert entry.correction < 0 and all("U" not in a.name for a in entry.energy_adjustments)


def test_shipped_table_reproduces_the_dft_hull_of_mp20_rows(shared_data):
    """The table rebuilt from formation energies puts MP-20 test crystals where the CSV says (DFT vs DFT)."""
    with gzip.open(shared_data / "mp_20_sample" / "test.csv.gz", "rt") as handle:
        rows = list(csv.DictReader(handle))[:40]
    errors = []
    for row in rows:
        chemsys = "-".join(sorted(str(e) for e in Composition(row["pretty_formula"]).elements))
        entries = table_entries(chemsys)
        own = next(e for e in entries if e.entry_id == row["material_id"])
        e_hull = energy_above_hull(own.composition, own.energy, build_phase_diagram(entries, chemsys)).e_above_hull
        errors.append(abs(e_hull - float(row["e_above_hull"])))
    assert sum(errors) / len(errors) < 0.03 and max(errors) < 0.1


def test_uncovered_system_is_unknown_and_covered_one_is_not():
    """CaTaS2 over a hull of the elements alone: a deep 'e_above_hull' that says nothing, so unknown."""
    caas = Composition("CaTaS2")
    elements_only = [ComputedEntry(Composition(el), -1.0 * 1, entry_id=el) for el in ("Ca", "Ta", "S")]
    hull = energy_above_hull(caas, -10.0, elements_only, source="mp-table")
    assert hull.e_above_hull < -1 and hull.n_compounds == 0 and not hull.covered and hull.source == "mp-table"
    config = LabelConfig(ehull_stable=0.1)
    assert stability_class("ok", hull.e_above_hull, hull.covered, None, config) == "unknown"
    assert "stable" not in stability_labels(hull.e_above_hull, None, config, hull.covered)
    with_binary = [*elements_only, ComputedEntry(Composition("CaS"), -2 * 2.0, entry_id="CaS")]
    covered = energy_above_hull(caas, -10.0, with_binary)
    assert covered.covered and covered.n_compounds == 1
    assert stability_class("ok", covered.e_above_hull, covered.covered, None, config) == "stable"
    assert stability_labels(covered.e_above_hull, None, config, covered.covered) == {"stable": 1.0}


def test_real_table_coverage_of_known_and_unknown_systems():
    assert table_entries("Cl-Na") and any(len(e.composition.elements) == 2 for e in table_entries("Cl-Na"))
    elements_only = table_entries("He-Ne")  # no compound of two noble gases is known
    assert elements_only and all(e.composition.is_element for e in elements_only)
    hull = energy_above_hull(Composition("HeNe"), 0.0, elements_only)
    assert not hull.covered


def test_unconverged_and_unknown_never_count_as_stable():
    config = LabelConfig(ehull_stable=0.1)
    assert stability_class("unconverged", -0.5, True, True, config) == "unconverged"
    assert stability_class("failed", None, None, None, config) == "failed"
    assert stability_class(None, None, None, None, config) == "unscreened"
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    kcl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(6.29), ["K", "Cl"], [[0, 0, 0], [0.5] * 3])
    stats = round_statistics([si, nacl, kcl], [], [0.0, -1.2, 0.3], [None, None, None], [True, None, False])
    assert stats["screened"] == 3 and stats["unknown"] == 1 and stats["stable"] == 1 and stats["sun"] == 1
    assert stats["stable_fraction"] == pytest.approx(0.5) and stats["ehull_min"] == pytest.approx(0.0)


def test_mp_api_hull_is_fetched_once_per_system_then_read_from_the_database(db, monkeypatch):
    """With MP_API_KEY set, a system's entries come through mp-api's MPRester once, then from the database cache.

    The Materials Project server cannot be reached here, so a stand-in MPRester answers the one query mp-api makes.
    """
    import mp_api.client

    from crysloop.infra.documents import HullReference
    from crysloop.screening.mp_references import SOURCE_API
    from crysloop.tasks.screen import mp_references_task

    queries = []

    class StandInMPRester:
        def __init__(self, api_key=None):
            self.api_key = api_key

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def get_entries_in_chemsys(self, elements, compatible_only, additional_criteria):
            queries.append((sorted(elements), compatible_only, additional_criteria))
            return [
                ComputedEntry("Li2O", -14.31, entry_id="mp-1960"),
                ComputedEntry("Li", -1.91, entry_id="mp-135"),
                ComputedEntry("O2", -9.86, entry_id="mp-12957"),
            ]

    monkeypatch.setattr(mp_api.client, "MPRester", StandInMPRester)
    monkeypatch.setenv("MP_API_KEY", "k" * 32)
    first, source = mp_references_task.fn("Li-O")
    second, again = mp_references_task.fn("Li-O")
    assert source == again == SOURCE_API
    assert queries == [(["Li", "O"], True, {"thermo_types": ["GGA_GGA+U"]})]  # one query; the second call hit the cache
    assert sorted(e.entry_id for e in second) == ["mp-12957", "mp-135", "mp-1960"]
    assert [e.energy for e in second] == [e.energy for e in first]
    assert HullReference.objects(mlip=SOURCE_API, chemsys="Li-O").count() == 1
    monkeypatch.delenv("MP_API_KEY")
    assert mp_references_task.fn("Li-O")[1] != SOURCE_API  # without a key the shipped table serves
