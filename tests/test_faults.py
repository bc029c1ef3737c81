"""Fault injection: a campaign killed (exit 137, as kill -9) at seeded write points of every stage, then resumed,
ends exactly like an uninterrupted run; a write that fails with ENOSPC loses nothing reported stored.

Kill points are deterministic: ``CRYSLOOP_FAULT_POINT=stage:n`` makes the process die right after its n-th database
write in that stage (crysloop.infra.faults). One uninterrupted reference run records where the writes fall; a chain
of runs then dies at each chosen point in turn, each one resuming what the previous one left. Runs are forked from
one pre-imported process (tests/fault_zygote.py) to keep the suite within a few minutes on two cores.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_campaign import tiny_config, tiny_models  # noqa: F401 - tiny_models is a fixture used here

from crysloop.infra import embedded_store as embedded

pytestmark = [pytest.mark.faults, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generate", "screen", "kappa", "finetune", "dft", "statistics")
SEED = 16


def fault_config(models: Path, name: str) -> dict:
    """The smallest campaign that passes through every stage: 2 rounds of 3 crystals, fine-tuning, kappa and DFT."""
    config = tiny_config(models, name, rounds=2, n=3)
    config["labels"] = {"ehull_stable": 10.0}  # every screened crystal is a stable example for fine-tuning
    config["kappa"] = {"enabled": True, "top_n": 1}
    config["dft"] = {"enabled": True, "top_n": 1}  # a stand-in VASP that fails: a failed job is a finished job
    config["screening"] = {"fmax": 0.5, "steps": 150, "phonons": False, "batch_size": 8}  # unconverged = unlabelled
    return config


class Zygote:
    """Forks CLI runs from a process that imported crysloop once."""

    def __init__(self, env: dict, folder: Path):
        self.folder = folder
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fault_zygote.py")],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.process.stdout.readline())["ready"]
        self.runs = 0

    def run(self, args: list[str], data_dir: Path, **env: str) -> tuple[int, str]:
        self.runs += 1
        log = self.folder / f"run-{self.runs}.log"
        request = {"args": args, "log": str(log), "env": {"CRYSLOOP_DATA_DIR": str(data_dir), **env}}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        rc = json.loads(self.process.stdout.readline())["rc"]
        return rc, log.read_text() if log.exists() else ""

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def zygote(prefect_harness, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL

    folder = tmp_path_factory.mktemp("faults")
    vasp = folder / "vasp_std"  # passes the pre-queue check, then fails: a failed DFT job is a finished one
    vasp.write_text("#!/bin/sh\nexit 1\n")
    vasp.chmod(0o755)
    (folder / "potcars").mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(folder / "prefect"),
        "CRYSLOOP_MLIP": "chgnet",
        "CRYSLOOP_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "CRYSLOOP_VASP_CMD": str(vasp),
        "PMG_VASP_PSP_DIR": str(folder / "potcars"),
    }
    for name in ("CRYSLOOP_FAULT_POINT", "CRYSLOOP_FAULT_LOG", "CRYSLOOP_MONGODB_URI", "CRYSLOOP_DATA_DIR"):
        env.pop(name, None)
    process = Zygote(env, folder)
    yield process
    process.close()


def read_db(data_dir: Path) -> dict[str, list[dict]]:
    """Every collection as a fresh read-only client sees it on disk."""
    client = embedded.client_class(data_dir / "db", readonly=True)()
    try:
        db = client["crysloop"]
        return {name: list(db[name].find()) for name in db.list_collection_names()}
    finally:
        client.close()


def no_duplicates(data: dict[str, list[dict]]) -> None:
    def unique(collection: str, *fields: str) -> None:
        keys = [tuple(str(doc.get(f)) for f in fields) for doc in data.get(collection, [])]
        assert len(keys) == len(set(keys)), f"duplicate {collection} by {fields}"

    unique("candidates", "structure_hash")
    unique("screening", "candidate", "mlip")
    unique("round_samples", "campaign", "round", "index")
    unique("rounds", "campaign", "index")
    unique("dft_jobs", "candidate", "preset")
    unique("kappa", "candidate", "calculator", "method")
    unique("checkpoints", "name")


def outcome(data: dict[str, list[dict]]) -> dict:
    """What a campaign produced, by structure hash (ids differ between runs)."""
    hashes = {doc["_id"]: doc["structure_hash"] for doc in data["candidates"]}
    samples = {}
    for doc in data["round_samples"]:
        samples.setdefault(doc["round"], []).append((doc["index"], doc["valid"], doc.get("structure_hash")))
    return {
        "candidates": sorted(hashes.values()),
        "samples": {r: sorted(s) for r, s in samples.items()},
        "screening": {
            hashes[d["candidate"]]: (d["status"], d.get("e_above_hull"), d.get("stable")) for d in data["screening"]
        },
        "stats": {d["index"]: d["stats"] for d in data["rounds"]},
        "stages": {d["index"]: sorted(d["stages_done"]) for d in data["rounds"]},
        "rounds_completed": sorted(d["index"] for d in data["rounds"] if d["status"] == "completed"),
        "kappa": {hashes[d["candidate"]]: (d["status"], d.get("kappa_average")) for d in data.get("kappa", [])},
        "dft": {hashes[d["candidate"]]: d["state"] for d in data.get("dft_jobs", [])},
        "checkpoints": sorted(d["name"] for d in data.get("checkpoints", [])),
    }


def assert_same(got, want, path: str = "") -> None:
    """Equal, floats within 1e-5 relative (a resumed relaxation batches its crystals differently)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{path}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), f"{path}: {got} != {want}"
    else:
        assert got == want, f"{path}: {got} != {want}"


def write_segments(log: Path) -> list[tuple[str, int]]:
    """The stages (``stage@round``) an uninterrupted run went through, in order, with how many writes each made."""
    segments: list[tuple[str, int]] = []
    for line in log.read_text().splitlines():
        stage, n = line.split()
        if segments and segments[-1][0] == stage:
            segments[-1] = (stage, int(n))
        else:
            segments.append((stage, int(n)))
    return segments


def kill_points(segments: list[tuple[str, int]], per_segment: int, rng: random.Random) -> list[str]:
    """Seeded kill points ``stage@round:n`` in run order: ``per_segment`` write counts of every stage visited.

    After a kill the resumed stage counts again from 0, so a later point of the same stage is given as the writes
    left to go from the previous one.
    """
    points = []
    for stage, writes in segments:
        previous = 0
        for n in sorted(rng.sample(range(writes + 1), min(per_segment, writes + 1))):
            points.append(f"{stage}:{n - previous}")
            previous = n
    return points


def test_campaign_killed_at_seeded_points_of_every_stage_resumes_to_the_uninterrupted_result(
    zygote, tiny_models, tmp_path
):
    config = tmp_path / "faulty.yaml"
    config.write_text(yaml.safe_dump(fault_config(tiny_models, "faulty")))

    reference_dir, log = tmp_path / "reference", tmp_path / "writes.log"
    rc, output = zygote.run(["campaign", "run", str(config)], reference_dir, CRYSLOOP_FAULT_LOG=str(log))
    assert rc == 0, output
    reference = read_db(reference_dir)
    no_duplicates(reference)
    want = outcome(reference)
    segments = write_segments(log)
    assert {stage.split("@")[0] for stage, _ in segments} == set(STAGES), segments
    # kappa takes phonon-stable candidates only and phonon checks are off here (minutes of CPU): its kill points
    # cover entering the stage and its bookkeeping, not a phono3py run
    assert want["rounds_completed"] == [0, 1] and want["dft"] and want["checkpoints"]

    points = kill_points(segments, per_segment=3, rng=random.Random(SEED))
    chain_dir, killed, args = tmp_path / "chain", [], ["campaign", "run", str(config)]
    while points:
        # die at the first of the remaining points the run reaches (a resumed stage may have fewer writes left)
        rc, output = zygote.run(args, chain_dir, CRYSLOOP_FAULT_POINT=",".join(points))
        if rc == 0:
            break
        assert rc == 137, output
        fired = re.findall(r"^fault point (\S+)$", output, flags=re.M)[-1]
        killed.append(fired)
        points = points[points.index(fired) + 1 :]
        no_duplicates(read_db(chain_dir))
        args = ["campaign", "resume", "faulty"]
    if rc != 0:
        rc, output = zygote.run(args, chain_dir)
        assert rc == 0, output
    assert len(killed) >= 20, f"only {len(killed)} kill points were reached: {killed}"
    assert {point.split("@")[0] for point in killed} == set(STAGES), killed

    got = read_db(chain_dir)
    no_duplicates(got)
    assert_same(outcome(got), want)
    assert [c["status"] for c in got["campaigns"]] == ["completed"]


def test_enospc_loses_nothing_reported_stored(settings, tmp_path, monkeypatch):
    """Candidates stored in batches while fsync fails with ENOSPC at seeded calls: every reported insert is on disk."""
    from pymatgen.core import Lattice, Structure

    from crysloop.infra import db as dbmod
    from crysloop.infra.store import NewCandidate, add_candidates

    real_fsync, calls, failing = os.fsync, [0], set(random.Random(SEED).sample(range(1, 16), 6))

    def fsync(fd):
        calls[0] += 1
        if calls[0] in failing:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(embedded.os, "fsync", fsync)
    reported: set[str] = set()
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    dbmod.connect(settings)
    try:
        for batch in range(8):
            crystals = [
                Structure(Lattice.cubic(5.0 + 0.05 * (3 * batch + k)), rocksalt.species, rocksalt.frac_coords)
                for k in range(3)
            ]
            for _ in range(10):  # what a task with retries does
                try:
                    report = add_candidates([NewCandidate(s) for s in crystals])
                    reported.update(report.hashes)
                    break
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
    finally:
        dbmod.disconnect()
    assert calls[0] > max(failing), "every seeded failure happened"
    stored = {doc["structure_hash"] for doc in read_db(settings.data_dir)["candidates"]}
    assert reported and reported <= stored and len(stored) == len(reported) == 24


def test_fine_tuning_is_the_same_whatever_the_process_did_before(tiny_models, single_thread):
    """A campaign resumed at its fine-tuning stage must train the models an uninterrupted run trains."""
    import torch
    from pymatgen.core import Composition

    from crysloop.data.datasets import read_structures
    from crysloop.models import composition, diffcsp

    records = read_structures(tiny_models / "reference.csv", progress=False)[:4]
    labelled = [(r.structure, {"stable": float(i % 2)}) for i, r in enumerate(records)]

    def finetuned(noise: int) -> list[dict]:
        torch.rand(noise)  # what earlier stages of the same process did to the global generator
        lm = composition.finetune_composition_lm(
            composition.load_checkpoint(composition.shipped_checkpoint_path()),
            [(Composition(s.composition), labels) for s, labels in labelled],
            epochs=1,
            seed=5,
        )
        csp = diffcsp.finetune_diffcsp(
            diffcsp.load_checkpoint(diffcsp.shipped_checkpoint_path()),
            labelled,
            new_properties=["stable"],
            epochs=1,
            seed=5,
        )
        return [lm.state_dict(), csp.state_dict()]

    first, second = finetuned(1), finetuned(1000)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
