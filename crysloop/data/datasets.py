"""Crystal datasets: CDVAE-format CSVs (MP-20, perov-5, carbon-24, MPTS-52), extxyz files and CIF/POSCAR folders.

Parsing runs in a process pool with a progress bar. A row that does not parse raises :class:`InputError`
naming the file and row, or is skipped and counted (``skip_bad=True``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import shutil
import urllib.error
import urllib.request
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from pymatgen.core.periodic_table import DummySpecies
from tqdm.auto import tqdm

from crysloop.errors import InputError, OfflineError
from crysloop.resources import asset_path
from crysloop.settings import get_settings

CDVAE_BASE_URL = "https://raw.githubusercontent.com/txie-93/cdvae/main/data"
SPLITS = ("train", "val", "test")
KNOWN_DATASETS: dict[str, dict] = {
    "mp_20": {"folder": "mp_20", "properties": ["formation_energy_per_atom", "band_gap", "e_above_hull"]},
    "perov_5": {"folder": "perov_5", "properties": ["heat_ref", "heat_all", "dir_gap", "ind_gap"]},
    "carbon_24": {"folder": "carbon_24", "properties": ["energy_per_atom"]},
    "mpts_52": {"folder": "mpts_52", "properties": ["formation_energy_per_atom", "band_gap", "e_above_hull"]},
}
SHIPPED_DATASETS = {"embedded:mp_20_mini": ("datasets", "mp_20_mini.csv.gz")}  # 847 MP-20 training rows, CC BY 4.0
STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")
STRUCTURE_PREFIXES = ("POSCAR", "CONTCAR")
_ID_COLUMNS = ("material_id", "cif", "", "Unnamed: 0")


@dataclass
class CrystalRecord:
    """One crystal from a dataset: an identifier, the structure and its tabulated properties."""

    material_id: str
    structure: Structure
    properties: dict = field(default_factory=dict)


class CrystalDataset(list):
    """A list of :class:`CrystalRecord` that also remembers the rows skipped as unusable and those warned about."""

    def __init__(
        self,
        records=(),
        skipped: list[tuple[str, str]] | None = None,
        name: str = "",
        warnings: list[tuple[str, str]] | None = None,
    ):
        super().__init__(records)
        self.skipped = skipped or []
        self.name = name
        self.warnings = warnings or []  # (where, what) of rows kept but implausible, e.g. a 10^6 A cell

    @property
    def structures(self) -> list[Structure]:
        return [record.structure for record in self]


MIN_DISTANCE = 0.5  # A; closer atoms are one site written twice or a broken cell, never a crystal
MAX_VOLUME_PER_ATOM = 1000.0  # A^3; MP-20 spans 8-93, so a larger cell is almost surely a unit or format error


def structure_problem(structure: Structure, keep_overlaps: bool = False) -> str | None:
    """Why ``structure`` cannot be used as one crystal (no sites, partial occupancy, overlapping atoms), or None.

    ``keep_overlaps`` accepts overlapping atoms: in a generated set they are a sample to count as structurally
    invalid, not an input error."""
    if len(structure) == 0:
        return "no sites"
    unknown = sorted({sp.symbol for sp in structure.composition if isinstance(sp, DummySpecies)})
    if unknown:  # pymatgen reads any unknown symbol as a dummy species
        return f"unknown element {', '.join(map(repr, unknown))}"
    if not structure.is_ordered:
        site = next(s for s in structure if not s.is_ordered)
        return (
            f"partial occupancy ({site.species.formula} on one site): a disordered structure is not one crystal; "
            f"order it first (e.g. pymatgen's OrderDisorderedStructureTransformation)"
        )
    if keep_overlaps:
        return None
    if min(structure.lattice.abc) < MIN_DISTANCE:
        return f"a cell vector is shorter than {MIN_DISTANCE} A, so atoms overlap their own images"
    distances = structure.distance_matrix + np.diag(np.full(len(structure), np.inf))
    i, j = np.unravel_index(np.argmin(distances), distances.shape)
    if distances[i, j] < MIN_DISTANCE:
        return (
            f"overlapping atoms: sites {min(i, j)} ({structure[int(i)].specie}) and {max(i, j)} "
            f"({structure[int(j)].specie}) are {distances[i, j]:.2f} A apart (closer than {MIN_DISTANCE} A)"
        )
    return None


def cell_warning(structure: Structure) -> str | None:
    """A note when the cell is implausibly large (kept, but likely a unit or format error)."""
    per_atom = structure.volume / len(structure)
    if per_atom > MAX_VOLUME_PER_ATOM or max(structure.lattice.abc) > 1000:
        return (
            f"implausible cell: lattice lengths {', '.join(f'{x:.4g}' for x in structure.lattice.abc)} A, "
            f"{per_atom:.4g} A^3 per atom"
        )
    return None


def _checked(structure: Structure, keep_overlaps: bool = False) -> Structure | str:
    problem = structure_problem(structure, keep_overlaps)
    return structure if problem is None else problem


def _parse_cif(item: tuple[str, str], keep_overlaps: bool = False) -> Structure | str:
    _, text = item
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns on every CIF whose coordinates it rounds
            structure = Structure.from_str(text, fmt="cif")
    except Exception as exc:
        return f"cannot parse structure ({type(exc).__name__}: {exc})".strip()
    return _checked(structure, keep_overlaps)


def _parse_file(path: str, keep_overlaps: bool = False) -> Structure | str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(path)
    except Exception as exc:
        return f"cannot parse structure ({type(exc).__name__}: {exc})".strip()
    return _checked(structure, keep_overlaps)


def _parallel(fn, items: list, desc: str, workers: int | None, progress: bool) -> list:
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(items) < 64:
        return [fn(item) for item in tqdm(items, desc=desc, disable=not progress, unit="row")]
    chunksize = max(1, math.ceil(len(items) / (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(
            tqdm(
                pool.map(fn, items, chunksize=chunksize), total=len(items), desc=desc, disable=not progress, unit="row"
            )
        )


def _collect(wheres, ids, parsed, properties, skip_bad: bool, name: str) -> CrystalDataset:
    records, skipped, notes = [], [], []
    for where, material_id, result, props in zip(wheres, ids, parsed, properties, strict=True):
        if isinstance(result, str):
            if not skip_bad:
                raise InputError(f"{where}: {result}")
            skipped.append((where, result))
            continue
        if (note := cell_warning(result)) is not None:
            notes.append((where, note))
        records.append(CrystalRecord(material_id, result, props))
    return CrystalDataset(records, skipped, name, notes)


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def read_csv(
    path: Path, skip_bad: bool = False, workers: int | None = None, progress: bool = True, keep_overlaps: bool = False
) -> CrystalDataset:
    """Read a CDVAE-format CSV (plain or gzipped): a ``cif`` column, ``material_id`` and property columns."""
    try:
        frame = pd.read_csv(path, dtype={"material_id": str})
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file (a CSV with a header and a 'cif' column is expected)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    if "cif" not in frame.columns:
        raise InputError(f"{path}: no 'cif' column (columns: {', '.join(map(str, frame.columns))})")
    prop_columns = [c for c in frame.columns if c not in _ID_COLUMNS and not str(c).startswith("Unnamed")]
    ids = frame["material_id"].astype(str).tolist() if "material_id" in frame else [str(i) for i in frame.index]
    wheres = [f"{path}, row {i + 1} ({mid})" for i, mid in enumerate(ids)]
    cifs = ["" if isinstance(c, float) else c for c in frame["cif"].tolist()]
    parse = partial(_parse_cif, keep_overlaps=keep_overlaps)
    parsed = _parallel(parse, list(zip(wheres, cifs, strict=True)), f"parsing {Path(path).name}", workers, progress)
    values = frame[prop_columns].to_numpy(dtype=object)  # one row per CSV row, even with no property columns
    props = [{c: _clean(v) for c, v in zip(prop_columns, row, strict=True)} for row in values]
    return _collect(wheres, ids, parsed, props, skip_bad, Path(path).name)


def read_extxyz(path: Path, skip_bad: bool = False, keep_overlaps: bool = False) -> CrystalDataset:
    """Read every frame of an (ext)xyz file; ``atoms.info`` entries become properties."""
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        frames = read(path, index=":", format="extxyz")
    except Exception as exc:
        raise InputError(f"{path}: not a readable extxyz file ({type(exc).__name__}: {exc})") from None
    wheres, ids, parsed, props = [], [], [], []
    for i, atoms in enumerate(frames):
        info = {k: _clean(v) for k, v in atoms.info.items() if isinstance(v, (int, float, str, bool, np.generic))}
        if atoms.calc is not None:  # ASE moves energy/stress given in the comment line onto a calculator
            info.update({k: _clean(v) for k, v in atoms.calc.results.items() if np.ndim(v) == 0})
        wheres.append(f"{path}, frame {i + 1}")
        ids.append(str(info.pop("material_id", f"{Path(path).stem}-{i}")))
        props.append(info)
        if not atoms.pbc.all() or atoms.cell.volume <= 0:
            parsed.append("frame is not a periodic crystal (pbc and a cell are required)")
            continue
        parsed.append(_checked(AseAtomsAdaptor.get_structure(atoms), keep_overlaps))
    return _collect(wheres, ids, parsed, props, skip_bad, Path(path).name)


def _is_structure_file(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.lower().endswith(STRUCTURE_SUFFIXES) or name.startswith(STRUCTURE_PREFIXES)


def read_folder(
    path: Path, skip_bad: bool = False, workers: int | None = None, progress: bool = True, keep_overlaps: bool = False
) -> CrystalDataset:
    """Read every CIF and POSCAR/CONTCAR/.vasp file in a folder (not recursive)."""
    files = sorted(p for p in Path(path).iterdir() if p.is_file() and _is_structure_file(p))
    if not files:
        raise InputError(f"{path}: no CIF or POSCAR files in this folder")
    parse = partial(_parse_file, keep_overlaps=keep_overlaps)
    parsed = _parallel(parse, [str(f) for f in files], f"parsing {Path(path).name}/", workers, progress)
    ids = [f.name.removesuffix(".gz").rsplit(".", 1)[0] if "." in f.name else f.name for f in files]
    return _collect([str(f) for f in files], ids, parsed, [{} for _ in files], skip_bad, Path(path).name)


def read_structures(
    path: str | Path,
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool = True,
    keep_overlaps: bool = False,
) -> CrystalDataset:
    """Read crystals from a CSV(.gz), an (ext)xyz file, a single CIF/POSCAR, or a folder of them
    (``keep_overlaps``: see :func:`structure_problem`)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_folder(path, skip_bad, workers, progress, keep_overlaps)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return read_csv(path, skip_bad, workers, progress, keep_overlaps)
    if name.endswith((".xyz", ".extxyz")):
        return read_extxyz(path, skip_bad, keep_overlaps)
    if _is_structure_file(path):
        parsed = _parse_file(str(path), keep_overlaps)
        return _collect([str(path)], [path.stem], [parsed], [{}], skip_bad, path.name)
    raise InputError(f"{path}: unknown format (expected .csv[.gz], .extxyz/.xyz, .cif, POSCAR or a folder)")


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_path(name: str, split: str, cache_dir: Path | None = None) -> Path:
    """Where the cached copy of a known dataset split lives."""
    if name not in KNOWN_DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)} (or give a file path)")
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return (cache_dir or get_settings().cache_dir / "datasets") / name / f"{split}.csv"


def fetch_dataset(
    name: str, split: str = "train", cache_dir: Path | None = None, sha256: str | None = None, timeout: float = 30.0
) -> Path:
    """Download a CDVAE dataset split to the cache (once) and verify it against its recorded SHA-256.

    The checksum of the first download is recorded beside the file and checked on every later use, so a
    truncated or altered cache is caught; pass ``sha256`` to pin the expected digest yourself.
    """
    target = dataset_path(name, split, cache_dir)
    checksum_file = target.with_suffix(".csv.sha256")
    if not target.exists():
        url = f"{CDVAE_BASE_URL}/{KNOWN_DATASETS[name]['folder']}/{split}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".csv.part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise OfflineError(
                f"could not download {name}/{split} from {url} ({exc}). Are you offline? "
                f"Download it elsewhere and place it at {target}, or pass a file path instead of a dataset name."
            ) from None
        os.replace(partial, target)
        checksum_file.write_text(sha256sum(target) + "\n")
    actual = sha256sum(target)
    expected = sha256 or (checksum_file.read_text().strip() if checksum_file.exists() else None)
    if expected and actual != expected:
        raise InputError(f"{target}: checksum mismatch (expected {expected}, got {actual}); delete it to re-download")
    if not checksum_file.exists():
        checksum_file.write_text(actual + "\n")
    return target


def load_dataset(
    name_or_path: str | Path,
    split: str = "train",
    skip_bad: bool = False,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> CrystalDataset:
    """A known dataset by name (``mp_20``, ``perov_5``, ...; downloaded once), a dataset shipped in the package
    (``embedded:mp_20_mini``) or any readable path."""
    if str(name_or_path) in SHIPPED_DATASETS:
        name_or_path = asset_path(*SHIPPED_DATASETS[str(name_or_path)])
    path = Path(name_or_path).expanduser()
    if path.exists():
        return read_structures(path, skip_bad=skip_bad, progress=progress)
    name = str(name_or_path).lower().replace("-", "_")
    if name not in KNOWN_DATASETS:
        raise InputError(f"{name_or_path}: neither a file nor a known dataset ({', '.join(KNOWN_DATASETS)})")
    dataset = read_csv(fetch_dataset(name, split, cache_dir), skip_bad=skip_bad, progress=progress)
    dataset.name = f"{name}/{split}"
    return dataset


def write_records_csv(records: list[CrystalRecord], path: Path) -> None:
    """Write records as a CDVAE-format CSV (gzipped when the name ends in .gz)."""
    rows = [{"material_id": r.material_id, **r.properties, "cif": r.structure.to(fmt="cif")} for r in records]
    buffer = io.StringIO()
    pd.DataFrame(rows).to_csv(buffer, index=False)
    data = buffer.getvalue().encode()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(data)
