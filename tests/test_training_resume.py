"""The shared training loop resumes exactly: for DiffCSP, ConditionCDVAE+ (VAE and latent GAN stages) and the
composition model, a run stopped between steps and resumed from its last checkpoint ends with the weights of an
uninterrupted run; a process killed (SIGKILL) while writing a checkpoint leaves the previous one loadable, and the
run resumes from it to the same weights.

Run as a script (``python tests/test_training_resume.py MODEL CHECKPOINT N``), this file trains MODEL and kills
itself in the middle of writing its N-th checkpoint file.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MP20 = ROOT.parent / "shared" / "data" / "mp_20_sample" / "val.csv.gz"
FORMULAS = ["MgO", "NaCl", "Fe3O4", "GaAs", "Ni3Al", "ZnS", "KCl", "CaF2", "Al2O3", "TiO2", "LiF", "SrTiO3"]
MODELS = ("diffcsp", "cdvae", "composition_lm")
pytestmark = pytest.mark.slow


def _crystals(n: int) -> list:
    from crysloop.data.datasets import read_structures

    return list(read_structures(MP20, progress=False))[:n]


def train(model: str, path: Path, resume: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """A few epochs of ``model`` on tiny data, checkpointed every epoch at ``path``; the weights trained."""
    if model == "diffcsp":
        from crysloop.models.diffcsp import DiffCSPConfig, train_diffcsp

        config = DiffCSPConfig.preset("cpu-tiny", properties=("band_gap",), batch_size=4)
        trained = train_diffcsp(
            _crystals(10),
            config,
            device="cpu",
            epochs=3,
            checkpoint_path=path,
            resume=resume,
            checkpoint_every=1,
            seed=2,
            progress=False,
        )
        return {"model": trained.state_dict()}
    if model == "cdvae":
        from crysloop.models.cdvae import CDVAEConfig, GANConfig, train_cdvae

        config = CDVAEConfig.preset("cpu-tiny", conditions=("formation_energy_per_atom", "formula"), batch_size=4)
        gan_config = replace(GANConfig.preset("cpu-tiny"), batch_size=4, critic_steps=2)
        vae, gan = train_cdvae(
            _crystals(8),
            config,
            device="cpu",
            epochs=2,
            gan_epochs=3,
            gan_config=gan_config,
            checkpoint_path=path,
            resume=resume,
            checkpoint_every=1,
            seed=3,
            progress=False,
        )
        return {"model": vae.state_dict(), "gan": gan.generator.state_dict()}
    from crysloop.models.composition import CompositionLMConfig, train_composition_lm

    config = CompositionLMConfig(n_layer=1, n_head=2, n_embd=16)
    properties = [{"stable": float(i % 2)} for i in range(len(FORMULAS))]
    trained = train_composition_lm(
        FORMULAS,
        properties,
        ["stable"],
        config,
        epochs=3,
        batch_size=4,
        seed=4,
        checkpoint_path=path,
        resume=resume,
        checkpoint_every=1,
    )
    return {"model": trained.state_dict()}


def _assert_same(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> None:
    assert a.keys() == b.keys()
    for part in a:
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def _read(model: str, path: Path) -> dict:
    from crysloop.models.checkpoint import read_checkpoint

    return read_checkpoint(path, model)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("uninterrupted")
    weights = {model: train(model, folder / f"{model}.pt") for model in MODELS}
    torch.set_num_threads(threads)
    return weights


# (model, optimiser call at which the run stops: mid-epoch; ConditionCDVAE+ once in each stage, its VAE taking
# the first 4 calls and the GAN 3 an epoch)
STOPS = [("diffcsp", 5), ("cdvae", 3), ("cdvae", 9), ("composition_lm", 6)]


@pytest.mark.parametrize("model,stop_at", STOPS)
def test_a_run_stopped_between_steps_resumes_to_the_same_weights(
    model, stop_at, uninterrupted, tmp_path, monkeypatch, single_thread
):
    from crysloop.models.training import Trainer

    optimise, calls = Trainer.optimise, []

    def stop(self, name, loss):
        calls.append(name)
        if len(calls) == stop_at:
            raise KeyboardInterrupt("stopped between steps")
        optimise(self, name, loss)

    path = tmp_path / "run.pt"
    monkeypatch.setattr(Trainer, "optimise", stop)
    with pytest.raises(KeyboardInterrupt):
        train(model, path)
    monkeypatch.setattr(Trainer, "optimise", optimise)
    saved = _read(model, path)["training_state"]
    assert 0 < saved["step"] < stop_at  # stopped mid-epoch, after at least one checkpoint
    if model == "cdvae":
        assert saved["stage"] == ("vae" if stop_at <= 4 else "gan")
    _assert_same(train(model, path, resume=True), uninterrupted[model])


# (model, checkpoint write during which the process dies): for ConditionCDVAE+, a GAN-stage write
KILLS = [("diffcsp", 2), ("cdvae", 5), ("composition_lm", 2)]


@pytest.mark.faults
@pytest.mark.parametrize("model,kill_at", KILLS)
def test_a_kill_while_saving_leaves_the_previous_checkpoint(model, kill_at, uninterrupted, tmp_path, single_thread):
    path = tmp_path / "run.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, model, str(path), str(kill_at)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    partial = path.with_name(path.name + ".tmp")
    assert partial.is_file() and partial.stat().st_size < path.stat().st_size  # the write was cut short
    with pytest.raises(Exception):  # noqa: B017 - any unpickling error: the half-written file is unreadable
        torch.load(partial, weights_only=True)
    previous = _read(model, path)
    assert previous["training_state"]["step"] > 0
    if model == "cdvae":
        assert previous["training_state"]["stage"] == "gan" and previous["gan"] is not None
    _assert_same(train(model, path, resume=True), uninterrupted[model])


def _die_in_the_middle_of_write(n: int) -> None:
    """From the ``n``-th call on, ``torch.save`` writes half of its bytes, flushes them and kills the process."""
    save, calls = torch.save, []

    def dying_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < n:
            return save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dying_save


if __name__ == "__main__":
    torch.set_num_threads(1)
    _die_in_the_middle_of_write(int(sys.argv[3]))
    train(sys.argv[1], Path(sys.argv[2]))
