"""The screen flow under Prefect's test harness: candidates -> relax -> hull -> phonons -> ScreeningResult,
resumable."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from crysloop.infra.documents import Candidate, HullReference, ScreeningResult
from crysloop.infra.store import NewCandidate, add_candidates
from crysloop.screening.config import ScreeningConfig

pytestmark = pytest.mark.usefixtures("single_thread")


def _nacl(a: float) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def test_screen_flow_stores_results_and_second_run_skips(db, prefect_harness):
    from crysloop.flows.screen import screen_flow

    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.50), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    broken = Structure(Lattice.cubic(4.0), ["Na", "Na"], [[0, 0, 0], [0.01, 0, 0]])
    add_candidates([NewCandidate(_nacl(5.60), source="dataset", dataset="test")])  # a known compound: a reference
    add_candidates([NewCandidate(si), NewCandidate(_nacl(5.80)), NewCandidate(broken)], campaign="c1")

    config = ScreeningConfig(mlip="chgnet", fmax=0.01, phonons=True, phonon_min_length=5.0, batch_size=4, hull="mlip")
    summary = screen_flow(config, campaign="c1", reference_structures=[_nacl(5.40)])
    assert summary.screened == 3 and summary.failed == 1 and summary.phonon_checked == 2
    results = {r.formula: r for r in ScreeningResult.objects(mlip="chgnet")}
    assert set(results) == {"Si", "NaCl", "Na"} and ScreeningResult.objects.count() == 3
    failed = ScreeningResult.objects(status="failed").get()
    assert failed.error.startswith("relaxation:") and failed.e_above_hull is None

    nacl, si_result = results["NaCl"], results["Si"]
    assert nacl.status == "ok" and nacl.converged and nacl.campaign == "c1"
    assert abs(nacl.e_above_hull) < 0.005  # same crystal as the dataset reference
    assert nacl.formation_energy_per_atom < -1.5 and nacl.stable
    assert abs(si_result.e_above_hull) < 0.005 and si_result.formation_energy_per_atom == pytest.approx(0, abs=0.005)
    assert si_result.phonon_stable and si_result.min_frequency_thz > -0.01
    assert Structure.from_dict(si_result.relaxed_structure).volume > 35
    assert {h.chemsys for h in HullReference.objects(mlip="chgnet")} == {"Na", "Cl", "Cl-Na", "Si"}
    assert len(HullReference.objects(mlip="chgnet", chemsys="Cl-Na").get().entries) == 2  # dataset + argument
    assert ScreeningResult.objects(candidate__in=list(Candidate.objects(source="dataset"))).count() == 0

    again = screen_flow(config.model_copy(update={"batch_size": 16}), campaign="c1")
    assert again.screened == 0 and ScreeningResult.objects.count() == 3

    retry = screen_flow(
        config.model_copy(update={"phonons": False, "batch_size": 16}), campaign="c1", retry_failed=True
    )
    assert retry.screened == 1 and retry.failed == 1


def test_screen_cli_runs_the_flow(db, prefect_harness, capsys):
    from crysloop.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["screen", "--campaign", "nothing-here", "--mlip", "chgnet"])
    assert exit_info.value.code == 0
    assert "0 screened" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_info:
        main(["screen", "--mlip", "mace"])
    assert exit_info.value.code == 1
    assert "unknown MLIP" in capsys.readouterr().err


def test_screen_flow_relaxes_in_worker_processes(db, prefect_harness):
    """The campaign's `processes` executor: relaxations and phonon checks run in a pool of worker processes."""
    from crysloop.flows.runners import task_runner
    from crysloop.flows.screen import screen_flow
    from crysloop.infra.executors import ExecutorConfig

    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.50), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    add_candidates([NewCandidate(si), NewCandidate(_nacl(5.70))], campaign="p1")
    runner = task_runner(ExecutorConfig(kind="processes", workers=2))
    summary = screen_flow.with_options(task_runner=runner)(
        ScreeningConfig(mlip="chgnet", fmax=0.01, phonons=True, phonon_min_length=5.0, hull="mlip"),
        campaign="p1",
        executor=ExecutorConfig(kind="processes", workers=2),
        reference_structures=[_nacl(5.40)],  # a known NaCl: the Na-Cl system is covered
    )
    assert summary.screened == 2 and summary.failed == 0 and summary.phonon_checked == 2
    assert {r.formula: r.status for r in ScreeningResult.objects(campaign="p1")} == {"Si": "ok", "NaCl": "ok"}
    assert ScreeningResult.objects(campaign="p1", formula="Si").get().phonon_stable


def test_mp_hull_records_source_and_coverage_and_unknown_is_not_stable(db, prefect_harness):
    """Against the shipped MP table with SevenNet: NaCl is on its hull; CuW (no Cu-W compound known) is unknown."""
    from crysloop.flows.screen import screen_flow

    cuw = Structure(Lattice.cubic(3.05), ["Cu", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    add_candidates([NewCandidate(_nacl(5.60)), NewCandidate(cuw)], campaign="mp1")
    summary = screen_flow(ScreeningConfig(mlip="sevenn-l3i5", phonons=False, fmax=0.05, steps=200), campaign="mp1")
    assert summary.screened == 2 and summary.unknown == 1 and summary.failed == 0
    results = {r.formula: r for r in ScreeningResult.objects(campaign="mp1")}
    nacl, cuw_result = results["NaCl"], results["CuW"]
    assert nacl.hull_source == "mp-table" and nacl.hull_covered and nacl.hull_compounds >= 1
    assert abs(nacl.e_above_hull) < 0.1 and nacl.stable is True
    assert cuw_result.hull_source == "mp-table" and cuw_result.hull_covered is False and cuw_result.hull_compounds == 0
    assert cuw_result.e_above_hull is not None and cuw_result.stable is None
    assert {row["stability"] for row in summary.rows} == {"stable", "unknown"}


def test_unconverged_relaxations_are_never_hull_references(db, prefect_harness):
    from crysloop.screening.relax import RelaxConfig
    from crysloop.tasks.screen import hull_references_task

    add_candidates([NewCandidate(_nacl(6.3), source="dataset", dataset="test")])
    few_steps = hull_references_task.fn("Cl-Na", "chgnet", RelaxConfig(fmax=1e-3, steps=2))
    assert few_steps == [] and HullReference.objects(mlip="chgnet", chemsys="Cl-Na").get().entries == []
    converged = hull_references_task.fn("Cl-Na", "chgnet", RelaxConfig(fmax=0.05, steps=300))
    assert len(converged) == 1 and converged[0].composition.reduced_formula == "NaCl"
