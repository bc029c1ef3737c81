"""Force sets of displaced supercells, cached on disk chunk by chunk so an interrupted run resumes where it stopped."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

ForceFunction = Callable[[Sequence[Atoms]], Sequence[np.ndarray]]


def force_set_key(calculator_name: str, supercells: Sequence[Atoms], kind: str) -> str:
    """Cache key of one displacement set: calculator name, set kind and a hash of every supercell's cell and positions.

    Hashing the displaced cells themselves covers the crystal, supercell matrix, displacement distance and order.
    """
    digest = hashlib.sha1(f"{calculator_name}|{kind}|{len(supercells)}".encode())
    for atoms in supercells:
        digest.update("".join(atoms.get_chemical_symbols()).encode())
        digest.update(np.round(atoms.cell.array, 6).tobytes())
        digest.update(np.round(atoms.get_scaled_positions(wrap=False), 8).tobytes())
    return f"{kind}-{calculator_name}-{digest.hexdigest()[:20]}"


def load_force_set(path: Path, natoms: int) -> np.ndarray:
    """The forces cached at ``path`` (shape ``(n_done, natoms, 3)``); empty when absent or unreadable."""
    empty = np.zeros((0, natoms, 3))
    if not path.is_file():
        return empty
    try:
        with np.load(path) as data:
            forces = np.asarray(data["forces"], dtype=float)
    except (OSError, ValueError, KeyError):
        return empty
    return forces if forces.ndim == 3 and forces.shape[1:] == (natoms, 3) else empty


def save_force_set(path: Path, forces: np.ndarray) -> None:
    """Write ``forces`` atomically: a temporary file in the same folder, fsynced, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, forces=forces)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def evaluate_force_set(
    supercells: Sequence[Atoms],
    forces_of: ForceFunction,
    cache_path: Path | None = None,
    chunk_size: int = 16,
    description: str = "forces",
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """Forces on every supercell, reusing and extending the cache at ``cache_path`` after each chunk.

    Returns the ``(n, natoms, 3)`` force array and how many supercells were evaluated in this call.
    """
    natoms = len(supercells[0])
    done = load_force_set(cache_path, natoms) if cache_path else np.zeros((0, natoms, 3))
    done = done[: len(supercells)]
    start = len(done)
    chunks = [done]
    with tqdm(total=len(supercells), initial=start, desc=description, unit="cell", disable=not progress) as bar:
        for first in range(start, len(supercells), chunk_size):
            batch = supercells[first : first + chunk_size]
            chunks.append(np.asarray(forces_of(batch), dtype=float).reshape(len(batch), natoms, 3))
            if cache_path:
                save_force_set(cache_path, np.concatenate(chunks))
            bar.update(len(batch))
    return np.concatenate(chunks), len(supercells) - start
