"""The kappa Prefect flow on a seeded database: selection, cost control, storage, labels and the CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crysloop.cli import main
from crysloop.infra.db import database
from crysloop.infra.documents import Candidate, KappaResult, ScreeningResult
from crysloop.infra.store import NewCandidate, add_candidates
from crysloop.kappa.config import KappaStageConfig
from crysloop.kappa.targets import kappa_labels

MESH = (11, 11, 11)


def seed(campaign: str) -> dict[str, str]:
    """Candidates with screening results: Si (best), Cu (a metal), NaCl (far above hull), GaAs (screening failed)."""
    crystals = {
        "Si": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]),
        "Cu": Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]),
        "NaCl": Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "GaAs": Structure.from_spacegroup("F-43m", Lattice.cubic(5.65), ["Ga", "As"], [[0, 0, 0], [0.25] * 3]),
    }
    screening = {"Si": ("ok", 0.0), "Cu": ("ok", -0.01), "NaCl": ("ok", 0.5), "GaAs": ("failed", None)}
    add_candidates([NewCandidate(s) for s in crystals.values()], campaign=campaign)
    ids = {}
    for formula, structure in crystals.items():
        candidate = Candidate.objects.get(formula=formula)
        status, e_hull = screening[formula]
        ScreeningResult(
            candidate=candidate,
            mlip="chgnet",
            campaign=campaign,
            formula=formula,
            status=status,
            relaxed_structure=structure.as_dict(),
            e_above_hull=e_hull,
            phonon_stable=status == "ok",
        ).save()
        ids[formula] = str(candidate.pk)
    return ids


def test_kappa_flow_selects_skips_stores_and_labels(settings, prefect_harness, tmp_path_factory, capsys):
    from crysloop.flows.kappa import kappa_flow

    # reuse CHGNet force sets another kappa test module may have computed this session (same cells, same key)
    shared = tmp_path_factory.getbasetemp() / "kappa-chgnet-force-sets"
    cache = settings.cache_dir / "kappa"
    if shared.is_dir():
        shutil.copytree(shared, cache, dirs_exist_ok=True)
    with database():
        ids = seed("hot")

    config = KappaStageConfig(
        mlip="chgnet", temperatures=(300.0, 600.0), top_n=1, mesh=MESH, fc3_min_length=6.0, fc2_min_length=6.0
    )
    summary = kappa_flow(config, campaign="hot", screening_mlip="chgnet")
    assert (summary.computed, summary.skipped, summary.failed) == (1, 1, 0)
    assert list(cache.glob("fc3-chgnet-*.npz"))  # force sets cached where the settings say

    with database():
        results = {r.formula: r for r in KappaResult.objects(campaign="hot")}
        assert set(results) == {"Si", "Cu"}  # NaCl above the hull limit, GaAs failed screening
        si, cu = results["Si"], results["Cu"]
        assert si.status == "ok" and si.calculator == "chgnet" and si.method == "RTA"
        assert str(si.candidate.pk) == ids["Si"]
        assert si.temperatures == [300.0, 600.0] and si.mesh == list(MESH)
        assert si.fc3_supercell == (2 * np.eye(3, dtype=int)).tolist()
        assert len(si.kappa) == 2 and all(len(k) == 6 for k in si.kappa)
        assert si.kappa_average[0] > si.kappa_average[1] > 0
        assert cu.status == "skipped" and "metal" in cu.error
        labels = kappa_labels(KappaResult.objects(campaign="hot"), temperature=300.0)
        assert labels == pytest.approx({ids["Si"]: np.log10(si.kappa_average[0])})
        assert kappa_labels(KappaResult.objects(), temperature=600.0, log10=False) == pytest.approx(
            {ids["Si"]: si.kappa_average[1]}
        )

    # a second run finds nothing left to do (results are kept, not recomputed)
    again = kappa_flow(config, campaign="hot", screening_mlip="chgnet")
    assert (again.computed, again.skipped, again.failed) == (0, 0, 0)

    with pytest.raises(SystemExit) as exit_info:
        main(["kappa", "show", "--campaign", "hot", "--temperature", "300"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Si" in out and f"{si.kappa_average[0]:.2f}" in out and "skipped" in out


def test_kappa_cli_rejects_bad_temperatures_and_mesh(settings, capsys):
    for argv in (["kappa", "run", "--temperatures", "300,hot"], ["kappa", "run", "--mesh", "11,11"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert "error:" in err and ("temperatures" in err or "mesh" in err)


def test_kappa_selection_leaves_out_uncovered_systems(settings):
    from crysloop.infra.kappa import select_kappa_candidates

    with database():
        seed("cold")
        assert [c.formula for c in select_kappa_candidates("chgnet", "cold")] == ["Cu", "Si"]  # lowest E_hull first
        ScreeningResult.objects(formula="Cu", campaign="cold").update(hull_covered=False)  # stability unknown
        assert [c.formula for c in select_kappa_candidates("chgnet", "cold", kappa_mlip="sevenn-0")] == ["Si"]
