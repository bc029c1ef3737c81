"""Machine-learned interatomic potentials (SevenNet, CHGNet, MatterSim) as ASE calculators, with batched inference.

Names used everywhere (settings, CLI, database): ``sevenn-l3i5`` and ``sevenn-0`` (SevenNet weights inside the
``sevenn`` wheel, offline; ``sevenn-l3i5`` is the offline default), ``chgnet`` (weights inside its wheel, offline),
``mattersim-1m`` and ``mattersim-5m`` (MatterSim v1.0.0 checkpoints from ``~/.local/mattersim/pretrained_models``,
downloaded there on first use, or a local ``.pth`` file given as ``weights``). When the configured default is a
MatterSim name whose weights are not in the cache, the offline default is used instead, said in one line.
A ``+d3`` suffix (``sevenn-l3i5+d3``, the CLI's ``--d3``) adds D3 dispersion; it is part of the name, so results
and hull references with and without dispersion are kept apart.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from crysloop.errors import CrysloopError, InputError, OfflineError
from crysloop.settings import get_settings, resolve_device

if TYPE_CHECKING:
    import torch
    from chgnet.model import CHGNet
    from mattersim.forcefield.potential import Potential

SEVENN_MODELS = {"sevenn-l3i5": "7net-l3i5", "sevenn-0": "7net-0"}
MATTERSIM_CHECKPOINTS = {"mattersim-1m": "mattersim-v1.0.0-1M.pth", "mattersim-5m": "mattersim-v1.0.0-5M.pth"}
MLIP_NAMES = (*SEVENN_MODELS, "chgnet", *MATTERSIM_CHECKPOINTS)
OFFLINE_DEFAULT = "sevenn-l3i5"
D3_SUFFIX = "+d3"
MATTERSIM_CACHE = Path("~/.local/mattersim/pretrained_models").expanduser()

_load_lock = threading.Lock()


@dataclass
class Prediction:
    """Energy (eV, whole cell), forces (eV/A, natoms x 3) and stress (eV/A^3, ASE Voigt order) of one structure."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray


def check_mlip_name(name: str | None) -> str:
    """The canonical potential name (``settings.mlip`` when None); an unknown name is an ``InputError``.

    A configured MatterSim default without its weights in the cache falls back to ``sevenn-l3i5`` (one line on stderr).
    """
    if name is None:
        return default_mlip_name()
    name = name.lower()
    if name.removesuffix(D3_SUFFIX) not in MLIP_NAMES:
        raise InputError(f"unknown MLIP {name!r}; choose one of {', '.join(MLIP_NAMES)} (optionally with {D3_SUFFIX})")
    return name


def with_d3_name(name: str | None, d3: bool) -> str:
    """The canonical name of potential ``name`` (default when None), with the D3 suffix when ``d3``."""
    name = check_mlip_name(name)
    return name if not d3 or name.endswith(D3_SUFFIX) else name + D3_SUFFIX


def default_mlip_name() -> str:
    """``settings.mlip``, unless it is a MatterSim model whose weights are absent: then the offline default."""
    name = check_mlip_name(get_settings().mlip)
    base = name.removesuffix(D3_SUFFIX)
    if base in MATTERSIM_CHECKPOINTS and not (MATTERSIM_CACHE / MATTERSIM_CHECKPOINTS[base]).is_file():
        _say_fallback_once(base)
        return OFFLINE_DEFAULT + name[len(base) :]
    return name


_fallback_said: set[str] = set()


def _say_fallback_once(name: str) -> None:
    if name not in _fallback_said:
        _fallback_said.add(name)
        print(
            f"note: {name} weights not found in {MATTERSIM_CACHE}; using {OFFLINE_DEFAULT} (offline)", file=sys.stderr
        )


def get_calculator(
    name: str | None = None, device: str | None = None, weights: str | Path | None = None, d3: bool = False
) -> Calculator:
    """A fresh ASE calculator for potential ``name`` on ``device`` (models are loaded once and shared).

    ``weights`` is a local MatterSim checkpoint file, overriding the cache and download for MatterSim names;
    ``d3`` (or a ``+d3`` name) adds Grimme D3 dispersion (zero damping, PBE) through
    :mod:`crysloop.screening.dispersion`.
    """
    name = check_mlip_name(name)
    device = resolve_device(device)
    calculator = _base_calculator(name.removesuffix(D3_SUFFIX), device, weights)
    if d3 or name.endswith(D3_SUFFIX):
        from crysloop.screening.dispersion import with_d3

        calculator = with_d3(calculator, device=device)
    return calculator


def _base_calculator(name: str, device: str, weights: str | Path | None) -> Calculator:
    if name in SEVENN_MODELS:
        from sevenn.calculator import SevenNetCalculator

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "no tensor-product accelerator": expected on CPU
            return SevenNetCalculator(model=_sevenn_model(name, device), file_type="model_instance", device=device)
    if name == "chgnet":
        return _chgnet_calculator(_chgnet_model(device), device)
    potential = load_mattersim_potential(name, device, weights)
    return mattersim_calculator(potential)


@lru_cache(maxsize=4)
def _sevenn_model(name: str, device: str) -> torch.nn.Module:
    """The pretrained SevenNet model from the wheel, loaded once per name and device and shared by calculators."""
    from sevenn.calculator import SevenNetCalculator

    with _load_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return SevenNetCalculator(SEVENN_MODELS[name], device=device).model


@lru_cache(maxsize=4)
def _chgnet_model(device: str) -> CHGNet:
    """The pretrained CHGNet, loaded once per device (it prints one line saying so) and shared by calculators."""
    from chgnet.model import CHGNet

    with _load_lock:
        model = CHGNet.load(verbose=False, use_device=device)
    model.graph_converter.set_isolated_atom_response("warn")
    return model


def _chgnet_calculator(model: CHGNet, device: str) -> Calculator:
    """CHGNet's ASE calculator around a loaded model, set up as chgnet 0.4.2's ``__init__`` does but without its
    unconditional device print: silencing that by swapping ``sys.stdout`` would be process-wide, and tasks run in
    threads."""
    from chgnet.model.dynamics import CHGNetCalculator

    calculator = CHGNetCalculator.__new__(CHGNetCalculator)
    Calculator.__init__(calculator)
    calculator.device, calculator.model = device, model
    calculator.stress_weight, calculator.return_site_energies = units.GPa, False
    return calculator


def mattersim_checkpoint_path(name: str, weights: str | Path | None = None) -> Path:
    """Where the MatterSim checkpoint lives: ``weights`` if given, else mattersim's cache, downloading it if absent."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError(f"MatterSim weights file {path} does not exist")
        return path
    filename = MATTERSIM_CHECKPOINTS[name]
    path = MATTERSIM_CACHE / filename
    if path.is_file():
        return path
    from mattersim.utils.download_utils import download_checkpoint

    try:
        download_checkpoint(filename, save_folder=str(MATTERSIM_CACHE))
    except Exception as exc:
        raise OfflineError(
            f"MatterSim weights {filename} are not in {MATTERSIM_CACHE} and could not be downloaded "
            f"({type(exc).__name__}); download them from github.com/microsoft/mattersim/tree/main/pretrained_models "
            f"into that folder, or use --mlip chgnet"
        ) from exc
    return path


def load_mattersim_potential(
    name: str = "mattersim-1m", device: str | None = None, weights: str | Path | None = None
) -> Potential:
    """The pretrained MatterSim ``Potential`` (cached per name, device and file), loaded with ``weights_only``."""
    return _load_mattersim_cached(
        check_mlip_name(name), resolve_device(device), mattersim_checkpoint_path(name, weights)
    )


@lru_cache(maxsize=4)
def _load_mattersim_cached(name: str, device: str, path: Path) -> Potential:
    import torch

    with _load_lock:
        try:
            checkpoint = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:
            raise CrysloopError(f"cannot read MatterSim checkpoint {path} for {name}: {exc}") from exc
        if checkpoint.get("model_name", "m3gnet") != "m3gnet" or "model" not in checkpoint:
            raise CrysloopError(f"{path} is not a MatterSim M3GNet checkpoint")
        return mattersim_potential(checkpoint["model_args"], checkpoint["model"], device)


def mattersim_potential(
    model_args: dict | None = None, state_dict: dict | None = None, device: str | None = None
) -> Potential:
    """A MatterSim ``Potential`` around an M3GNet built from ``model_args`` (mattersim defaults when None).

    Without ``state_dict`` the weights stay randomly initialised: useful to exercise the code path without weights.
    A ``state_dict`` whose keys or shapes do not match the model is a ``CrysloopError`` (never silent random weights).
    """
    from mattersim.forcefield.m3gnet.m3gnet import M3Gnet
    from mattersim.forcefield.potential import Potential

    device = resolve_device(device)
    model = M3Gnet(device=device, **(model_args or {})).to(device)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1].strip()
            raise CrysloopError(f"MatterSim weights do not match the model built from model_args: {first}") from exc
    model.eval()
    return Potential(model, device=device, model_name="m3gnet")


def mattersim_calculator(potential: Potential) -> Calculator:
    """An ASE calculator (energy, forces, stress) over a MatterSim ``Potential``."""
    from mattersim.forcefield.potential import MatterSimCalculator

    return MatterSimCalculator(potential=potential, device=potential.device)


def _as_atoms(item: Atoms | Structure) -> Atoms:
    return AseAtomsAdaptor.get_atoms(item) if isinstance(item, Structure) else item


def _as_structure(item: Atoms | Structure) -> Structure:
    return item if isinstance(item, Structure) else AseAtomsAdaptor.get_structure(item)


MAX_BATCH_ATOMS = 200  # atoms per forward pass: memory grows with atoms (docs/defaults.md)


def atom_batches(sizes: Sequence[int], batch_size: int, max_atoms: int = MAX_BATCH_ATOMS) -> list[range]:
    """Consecutive index ranges of at most ``batch_size`` structures and ``max_atoms`` atoms in all.

    Memory of a forward pass grows with the atoms in it, not the number of structures: a batch of a few phonon
    supercells can hold a thousand atoms. A structure larger than ``max_atoms`` gets a batch of its own.
    """
    if batch_size < 1 or max_atoms < 1:
        raise InputError(f"batch_size and max_atoms must be at least 1, got {batch_size} and {max_atoms}")
    batches, start, atoms = [], 0, 0
    for index, size in enumerate(sizes):
        if index > start and (index - start >= batch_size or atoms + size > max_atoms):
            batches.append(range(start, index))
            start, atoms = index, 0
        atoms += size
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches


def predict_batch(
    items: Sequence[Atoms | Structure],
    calculator: Calculator,
    batch_size: int = 16,
    max_atoms: int = MAX_BATCH_ATOMS,
    stress: bool = True,
) -> list[Prediction]:
    """Energies, forces and (with ``stress``) stresses of many structures, batched through the model when possible.

    CHGNet and MatterSim calculators run up to ``batch_size`` structures and ``max_atoms`` atoms per forward pass
    (see :func:`atom_batches`), and so does SevenNet on a GPU. SevenNet on a CPU, D3 sums and any other ASE
    calculator are called one structure at a time: on CPU a batched SevenNet pass measured slower than the same
    structures one by one (docs/defaults.md). Without ``stress`` the stress entries are zeros and CHGNet skips the
    lattice gradient.
    """
    if not items:
        return []
    model = getattr(calculator, "model", None)
    potential = getattr(calculator, "potential", None)
    if model is not None and hasattr(model, "predict_structure"):
        structures = [_as_structure(i) for i in items]
        batches = atom_batches([len(s) for s in structures], batch_size, max_atoms)
        stress_weight = getattr(calculator, "stress_weight", units.GPa)
        return [p for b in batches for p in _predict_chgnet(model, structures[b.start : b.stop], stress, stress_weight)]
    if potential is not None and hasattr(potential, "predict_properties"):
        atoms_list = [_as_atoms(i) for i in items]
        batches = atom_batches([len(a) for a in atoms_list], batch_size, max_atoms)
        return [p for b in batches for p in _predict_mattersim(potential, atoms_list[b.start : b.stop], len(b))]
    if _is_sevenn(calculator) and torch_device(calculator).type == "cuda":
        atoms_list = [_as_atoms(i) for i in items]
        batches = atom_batches([len(a) for a in atoms_list], batch_size, max_atoms)
        return [p for b in batches for p in predict_sevenn(calculator, atoms_list[b.start : b.stop])]
    predictions = []
    for item in items:
        atoms = _as_atoms(item).copy()
        atoms.calc = calculator
        predictions.append(
            Prediction(atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress() if stress else np.zeros(6))
        )
    return predictions


def _predict_chgnet(model: CHGNet, structures: list[Structure], stress: bool, stress_weight: float) -> list[Prediction]:
    """One CHGNet forward pass over ``structures``, forces (and stress) by a first-order gradient only.

    ``CHGNet.predict_structure`` differentiates with ``create_graph=True`` (for training on forces), which keeps a
    second graph alive and costs memory (docs/defaults.md); inference needs no second derivative.
    """
    import torch
    from ase.stress import full_3x3_to_voigt_6_stress
    from chgnet.model.model import BatchedGraph

    model.eval()
    device = next(model.parameters()).device
    with torch.enable_grad():
        graphs = [model.graph_converter(s).to(device) for s in structures]
        batched = BatchedGraph.from_graphs(
            graphs,
            bond_basis_expansion=model.bond_basis_expansion,
            angle_basis_expansion=model.angle_basis_expansion,
            compute_stress=stress,
        )
        out = model._compute(batched)
        composition = 0 if model.composition_model is None else model.composition_model(graphs)
        natoms = out["atoms_per_graph"]
        energy = (out["e"] + composition) * natoms if model.is_intensive else out["e"] + composition
        inputs = list(batched.atom_positions) + (list(batched.strains) if stress else [])
        grads = torch.autograd.grad(energy.sum(), inputs)
    energies = energy.detach().cpu().numpy()
    forces = [-g.detach().cpu().numpy().astype(float) for g in grads[: len(graphs)]]
    predictions = []
    for i in range(len(graphs)):
        voigt = np.zeros(6)
        if stress:  # dE/d(strain) / V, in CHGNet's GPa, then the calculator's conversion to eV/A^3
            gpa = grads[len(graphs) + i].detach().cpu().numpy() / float(batched.volumes[i]) * 160.21766208
            voigt = full_3x3_to_voigt_6_stress(gpa * stress_weight)
        predictions.append(Prediction(float(energies[i]), forces[i], voigt))
    return predictions


def _is_sevenn(calculator: Calculator) -> bool:
    return type(calculator).__name__ == "SevenNetCalculator" and hasattr(calculator, "model")


def torch_device(calculator: Calculator) -> torch.device:
    """The torch device a model-backed calculator runs on (CPU when it does not say)."""
    import torch

    return torch.device(str(getattr(calculator, "device", "cpu")))


_batch_models: dict[int, torch.nn.Module] = {}


def _sevenn_batch_model(calculator: Calculator) -> torch.nn.Module:
    """A copy of the calculator's SevenNet model switched to batch mode (the shared one stays single-graph)."""
    import copy

    key = id(calculator.model)
    if key not in _batch_models:
        with _load_lock:
            model = copy.deepcopy(calculator.model)
            model.set_is_batch_data(True)
            _batch_models[key] = model.eval()
    return _batch_models[key]


def predict_sevenn(calculator: Calculator, atoms_list: Sequence[Atoms]) -> list[Prediction]:
    """One SevenNet forward pass over ``atoms_list`` (graphs collated as SevenNet's trainer does)."""
    import sevenn._keys as keys
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.loader.dataloader import Collater

    graphs = [
        AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, calculator.cutoff, with_shift=False))
        for a in atoms_list
    ]
    batch = Collater([], follow_batch=None, exclude_keys=None)(graphs).to(torch_device(calculator))
    output = _sevenn_batch_model(calculator)(batch)
    energies = output[keys.PRED_TOTAL_ENERGY].detach().cpu().numpy()
    forces = output[keys.PRED_FORCE].detach().cpu().numpy().astype(float)
    stresses = -output[keys.PRED_STRESS].detach().cpu().numpy()[:, [0, 1, 2, 4, 5, 3]]  # SevenNet order to ASE Voigt
    offsets = np.cumsum([0] + [len(a) for a in atoms_list])
    return [
        Prediction(float(energies[i]), forces[offsets[i] : offsets[i + 1]], stresses[i].astype(float))
        for i in range(len(atoms_list))
    ]


def _predict_mattersim(potential: Potential, atoms_list: list[Atoms], batch_size: int) -> list[Prediction]:
    from ase.stress import full_3x3_to_voigt_6_stress
    from mattersim.datasets.utils.build import build_dataloader

    args = potential.model.model_args
    loader = build_dataloader(
        atoms_list,
        batch_size=batch_size,
        only_inference=True,
        cutoff=args["cutoff"],
        threebody_cutoff=args["threebody_cutoff"],
    )
    energies, forces, stresses = potential.predict_properties(loader, include_forces=True, include_stresses=True)
    return [
        Prediction(float(e), np.asarray(f, dtype=float), full_3x3_to_voigt_6_stress(np.asarray(s) * units.GPa))
        for e, f, s in zip(energies, forces, stresses, strict=True)
    ]


def batch_forces(
    items: Sequence[Atoms | Structure], calculator: Calculator, batch_size: int = 16, max_atoms: int = MAX_BATCH_ATOMS
) -> list[np.ndarray]:
    """Forces (eV/A) on many structures, e.g. displaced supercells for phonopy/phono3py, batched by atom count."""
    return [p.forces for p in predict_batch(items, calculator, batch_size, max_atoms, stress=False)]
