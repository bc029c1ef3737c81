"""Campaigns end to end with the shipped models, tiny rounds and one fine-tuning epoch: two rounds under the Prefect
test harness, kill-and-resume, deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crysloop.campaign.config import load_config, parse_config
from crysloop.data.datasets import read_structures, write_records_csv
from crysloop.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A folder with a small reference set (40 MP-20 crystals) for novelty and hull references."""
    folder = tmp_path_factory.mktemp("campaign")
    records = [
        r for r in read_structures(SHARED / "mp_20_sample" / "train.csv.gz", progress=False) if len(r.structure) <= 6
    ]
    write_records_csv(records[:40], folder / "reference.csv")
    return folder


def tiny_config(models: Path, name: str, rounds: int = 2, n: int = 3) -> dict:
    return {
        "name": name,
        "rounds": rounds,
        "candidates_per_round": n,
        "conditions": {"stable": 1},
        "mlip": "chgnet",
        "device": "cpu",
        "seed": 3,
        "reference_dataset": str(models / "reference.csv"),
        "evaluate": False,
        "composition_model": {"checkpoint": "shipped", "max_atoms": 6, "finetune_epochs": 1},
        "structure_model": {"checkpoint": "shipped", "steps": 200, "finetune_epochs": 1, "batch_size": 8},
        "screening": {"fmax": 0.2, "steps": 150, "phonons": False, "batch_size": 8},  # unconverged: no label
    }


def test_config_validation_names_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "Bad Name", "rounds": 0, "mlip": "mace"}))
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert "name:" in message and "rounds:" in message and "mlip:" in message
    with pytest.raises(InputError, match="stable is a yes/no label"):
        parse_config({"name": "x", "conditions": {"stable": 0.5}})
    with pytest.raises(InputError, match="no such campaign file"):
        load_config(tmp_path / "missing.yaml")
    demo = load_config(Path(__file__).resolve().parents[1] / "crysloop" / "assets" / "campaigns" / "demo.yaml")
    assert demo.rounds == 2 and demo.screening.mlip == "sevenn-l3i5" and demo.screening.hull == "mp"


def test_two_round_campaign_end_to_end(tiny_models, settings, prefect_harness):
    from crysloop.flows.campaign import campaign_flow
    from crysloop.infra.db import database
    from crysloop.infra.documents import Candidate, ModelCheckpoint, Round, RoundSample, ScreeningResult

    config = tiny_config(tiny_models, "tiny")
    results = campaign_flow(config)
    assert sorted(results) == [0, 1]
    with database(readonly=True):
        rounds = list(Round.objects(campaign="tiny").order_by("index"))
        assert [r.status for r in rounds] == ["completed", "completed"]
        assert {"generate", "screen", "finetune", "statistics"} <= set(rounds[0].stages_done)
        assert "finetune" not in rounds[1].stages_done  # the last round has nothing left to train for
        for r in rounds:
            # statistics run over every crystal sampled, invalid and repeated ones included
            samples = list(RoundSample.objects(campaign="tiny", round=r.index).no_dereference())
            assert r.stats["generated"] == len(samples) == 3 == r.stats["sampled"]
            results_by_id = {s.candidate.id: s for s in ScreeningResult.objects(mlip="chgnet").no_dereference()}
            screened = [results_by_id.get(s.candidate.id) if s.candidate else None for s in samples]
            ok = [s for s in screened if s is not None and s.status == "ok"]
            assert r.stats["screened"] == len(ok)
            assert r.stats["stable"] == sum(s.e_above_hull <= 0.1 for s in ok)
        candidates = list(Candidate.objects(campaign="tiny"))
        assert len({c.structure_hash for c in candidates}) == len(candidates)
        assert all(c.origin["conditions_stage2"] == {} for c in candidates if c.round == 0)
        assert ScreeningResult.objects(campaign="tiny").count() == len(candidates)
        # round 0's labels fine-tuned both models, which round 1 sampled from, conditioned on stable = 1
        checkpoints = {c.kind: c for c in ModelCheckpoint.objects(campaign="tiny")}
        assert set(checkpoints) == {"composition", "structure"}
        assert "stable" in checkpoints["structure"].conditions and "stable" in checkpoints["composition"].conditions
        round1 = [c for c in candidates if c.round == 1]
        assert round1 and all(c.origin["conditions_stage2"] == {"stable": 1.0} for c in round1)
        assert all(c.origin["structure_checkpoint"] == checkpoints["structure"].path for c in round1)
    # the stored statistics are those of the stored round, recomputed here from its samples and screening
    from crysloop.campaign.statistics import round_statistics
    from crysloop.flows.campaign import reference_structures
    from crysloop.infra.campaign import round_samples

    with database(readonly=True):
        for index in (0, 1):
            pairs = round_samples("tiny", index, "chgnet")
            ehull = [r.e_above_hull if r and r.status == "ok" else None for _, r in pairs]
            phonon = [r.phonon_stable if r and r.status == "ok" else None for _, r in pairs]
            recomputed = round_statistics(
                [s for s, _ in pairs],
                reference_structures(config["reference_dataset"]),
                ehull,
                phonon,
                [e is not None and e <= 0.1 for e in ehull],
            )
            assert {k: v for k, v in results[index].items() if k in recomputed} == recomputed
    # running it again changes nothing
    again = campaign_flow(tiny_config(tiny_models, "tiny"))
    assert again == results
    with database(readonly=True):
        assert Candidate.objects(campaign="tiny").count() == len(candidates)


def _cli(args: list[str], env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "crysloop", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def _stored(settings, collection: str) -> list[dict]:
    """The documents of ``collection`` as a read-only client sees them on disk (snapshot + journal)."""
    from crysloop.infra.embedded_store import client_class

    client = client_class(settings.db_dir, readonly=True)()
    try:
        return list(client[settings.db_name][collection].find())
    finally:
        client.close()


def test_killed_campaign_resumes_without_loss_or_duplicates(tiny_models, settings, tmp_path):
    config = tiny_config(tiny_models, "killme", rounds=2, n=3)
    path = tmp_path / "killme.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "CRYSLOOP_DATA_DIR": str(settings.data_dir)}
    process = _cli(["campaign", "run", str(path)], env)
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline and process.poll() is None:
        if _stored(settings, "screening"):  # round 0 generated and partly screened: kill it mid-campaign
            break
        time.sleep(0.5)
    assert process.poll() is None, f"the campaign ended before it could be killed:\n{process.stdout.read()}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = {c["structure_hash"] for c in _stored(settings, "candidates")}
    assert before and _stored(settings, "screening"), "killed after generation, during or after screening"

    resumed = _cli(["campaign", "resume", "killme"], env)
    output, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, output
    candidates = _stored(settings, "candidates")
    hashes = [c["structure_hash"] for c in candidates]
    assert len(hashes) == len(set(hashes)) and before <= set(hashes), "nothing lost, nothing duplicated"
    assert sorted(r["index"] for r in _stored(settings, "rounds")) == [0, 1]
    assert all(r["status"] == "completed" for r in _stored(settings, "rounds"))
    screened = [s["candidate"] for s in _stored(settings, "screening")]
    assert len(screened) == len(set(screened)) == len(candidates)
    round0 = [c for c in candidates if c["round"] == 0]
    assert len(round0) <= 3, "the interrupted generation was not repeated with new crystals"


def test_deployment_is_scheduled_and_runs_through_a_runner(tiny_models, settings, prefect_harness):
    """The path of `crysloop campaign deploy`: a cron deployment registered with the API, then executed."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    from crysloop.flows.deploy import campaign_deployment
    from crysloop.infra.db import database
    from crysloop.infra.documents import Campaign, Candidate

    config = parse_config(
        {
            **tiny_config(tiny_models, "nightly", rounds=1, n=2),
            "finetune": False,
            "screening": {"phonons": False, "steps": 5, "fmax": 0.5},
        }
    )
    deployment = campaign_deployment(config, "0 2 * * *")
    deployment_id = deployment.apply()

    async def stored():
        async with get_client() as client:
            return await client.read_deployment(deployment_id)

    registered = asyncio.run(stored())
    assert registered.name == "nightly" and registered.schedules[0].schedule.cron == "0 2 * * *"
    assert registered.parameters["config"]["name"] == "nightly" and "campaign:nightly" in registered.tags

    flow_run = run_deployment(f"campaign/{registered.name}", timeout=0)
    runner = Runner(name="test-runner", limit=1)
    runner.add_deployment(deployment)
    asyncio.run(runner.start(run_once=True))

    async def finished():
        async with get_client() as client:
            return await client.read_flow_run(flow_run.id)

    state = asyncio.run(finished()).state
    assert state.is_completed(), state
    with database(readonly=True):
        assert Campaign.objects.get(name="nightly").status == "completed"
        assert 1 <= Candidate.objects(campaign="nightly").count() <= 2


def test_generation_runs_on_a_local_dask_cluster(settings, prefect_harness):
    """The same generate flow with its Stage II chunks on a Dask cluster of two worker processes."""
    from crysloop.campaign.config import GenerationConfig, StructureModelConfig
    from crysloop.flows.generate import generate_flow
    from crysloop.flows.runners import task_runner
    from crysloop.infra.db import database
    from crysloop.infra.documents import Candidate
    from crysloop.infra.executors import ExecutorConfig

    runner = task_runner(ExecutorConfig(kind="dask", workers=2))
    summary = generate_flow.with_options(task_runner=runner)(
        n=4,
        config=GenerationConfig(structure_model=StructureModelConfig(steps=50, batch_size=2)),
        campaign="dask",
        device="cpu",
        seed=1,
    )
    assert summary.generated == 4 and summary.inserted + summary.invalid + summary.existing == 4
    with database(readonly=True):
        stored = list(Candidate.objects(campaign="dask"))
    assert len(stored) == summary.inserted and all(c.origin["structure_checkpoint"] == "shipped" for c in stored)


def test_train_flow_trains_and_registers_both_stages(tiny_models, settings, prefect_harness, tmp_path):
    from crysloop.flows.train import train_flow
    from crysloop.infra.db import database
    from crysloop.infra.documents import ModelCheckpoint
    from crysloop.models import composition, diffcsp

    data = str(tiny_models / "reference.csv")
    train_flow("composition", data, str(tmp_path / "lm.pt"), "lm-test", properties=("e_above_hull",), epochs=2)
    train_flow("structure", data, str(tmp_path / "csp.pt"), "csp-test", epochs=1, preset="cpu-tiny")
    assert "e_above_hull" in composition.load_checkpoint(tmp_path / "lm.pt").condition_names
    assert diffcsp.load_checkpoint(tmp_path / "csp.pt").config.mode == "csp"
    with database(readonly=True):
        stored = {c.name: c for c in ModelCheckpoint.objects}
    assert set(stored) == {"lm-test", "csp-test"} and stored["lm-test"].kind == "composition"
    assert all(len(c.sha256) == 64 for c in stored.values())
    with pytest.raises(InputError, match="no values for the properties"):
        train_flow("composition", data, str(tmp_path / "x.pt"), "x", properties=("kappa",), epochs=1)
