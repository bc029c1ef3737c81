"""The evaluation suite: every generative metric in one call, with a JSON + Markdown + PNG report."""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
from pymatgen.core import Structure

from crysloop.errors import InputError
from crysloop.evaluation.coverage import CoverageCutoffs, coverage, coverage_cutoffs, diversity
from crysloop.evaluation.distributions import densities, element_counts, sample_indices, wasserstein
from crysloop.evaluation.fingerprints import FingerprintCache, Fingerprints, compute_fingerprints
from crysloop.evaluation.matching import (
    CDVAE_TOLERANCES,
    PYMATGEN_TOLERANCES,
    MatchTolerances,
    novel_mask,
    reconstruction,
    unique_mask,
)
from crysloop.evaluation.validity import composition_validity, structure_validity


@dataclass
class EvaluationReport:
    """Metrics of one generated set against a reference (and optionally training) set, with wall times per step.

    ``timings`` are wall seconds per step, ``cpu_seconds`` the CPU time of the step including its worker processes;
    ``samples`` holds the generated-sample and reference values behind the distribution metrics (for plots).
    """

    dataset: str
    counts: dict[str, int]
    metrics: dict[str, float | int | None]
    timings: dict[str, float]
    cpu_seconds: dict[str, float]
    settings: dict[str, object]
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def to_dict(self, include_samples: bool = False) -> dict:
        """JSON-ready dictionary (NaN becomes None)."""
        data = asdict(self)
        if not include_samples:
            data.pop("samples")
        return json.loads(json.dumps(data, default=_jsonable), parse_constant=lambda _: None)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


class _Clock:
    """Wall time and CPU time (workers included) per named step."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
            self.cpu[name] = round(self.cpu.get(name, 0.0) + _cpu_seconds() - cpu_start, 3)


def _validity(structures: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
    comp = np.array([composition_validity(s.composition) for s in structures], dtype=bool)
    struct = np.array([structure_validity(s) for s in structures], dtype=bool)
    return comp, struct


def valid_mask(
    structures: Sequence[Structure],
    n_jobs: int | None = None,
    cache: FingerprintCache | None = None,
    fingerprints: Fingerprints | None = None,
) -> np.ndarray:
    """The suite's validity rule (CDVAE, DiffCSP): valid composition and structure, and a CrystalNN fingerprint
    that can be computed; ``fingerprints`` of the same structures are reused when given."""
    comp, struct = _validity(structures)
    fp = fingerprints if fingerprints is not None else compute_fingerprints(structures, n_jobs, cache)
    return comp & struct & fp.ok


def _check_lengths(name: str, values: Sequence | None, n: int) -> np.ndarray | None:
    if values is None:
        return None
    if len(values) != n:
        raise InputError(f"{name} has {len(values)} entries for {n} structures")
    return np.asarray(values, dtype=float)


def evaluate(
    generated: Sequence[Structure],
    reference: Sequence[Structure],
    train: Sequence[Structure] | None = None,
    dataset: str = "mp20",
    *,
    ground_truth: Sequence[Structure] | None = None,
    generated_energy_per_atom: Sequence[float] | None = None,
    reference_energy_per_atom: Sequence[float] | None = None,
    stable: Sequence[bool] | None = None,
    coverage_thresholds: CoverageCutoffs | tuple[float, float] | None = None,
    n_samples: int = 1000,
    seed: int = 0,
    reconstruction_tolerances: MatchTolerances = CDVAE_TOLERANCES,
    novelty_tolerances: MatchTolerances = PYMATGEN_TOLERANCES,
    n_jobs: int | None = None,
    cache: FingerprintCache | bool = True,
    progress: bool = False,
    symmetry_reduced_fingerprints: bool = False,
) -> EvaluationReport:
    """Run CDVAE's generation metrics (validity, COV-R/P, Wasserstein distances, diversity), uniqueness, novelty,
    S.U.N. (when ``stable`` labels are given) and, with ``ground_truth`` paired to ``generated``, the structure-
    prediction match rate and RMSE.

    Validity follows CDVAE: a crystal is valid when its composition and structure are and its CrystalNN
    fingerprint can be computed. Coverage uses every generated crystal (COV-P divides by all of them); the
    distribution metrics use up to ``n_samples`` valid crystals drawn with ``seed``. Uniqueness and novelty are
    counted among valid crystals; rates are over all generated crystals. ``symmetry_reduced_fingerprints`` trades
    bit-exact CDVAE fingerprints for about twice the speed (see :mod:`crysloop.evaluation.fingerprints`).
    """
    generated, reference = list(generated), list(reference)
    if not generated or not reference:
        raise InputError("evaluation needs at least one generated and one reference structure")
    if ground_truth is not None and len(ground_truth) != len(generated):
        raise InputError(f"ground truth has {len(ground_truth)} structures for {len(generated)} generated ones")
    gen_energy = _check_lengths("generated energies", generated_energy_per_atom, len(generated))
    ref_energy = _check_lengths("reference energies", reference_energy_per_atom, len(reference))
    stable_flags = None if stable is None else _check_lengths("stability labels", stable, len(generated)).astype(bool)
    cutoffs = coverage_cutoffs(dataset, coverage_thresholds)
    store = FingerprintCache.default() if cache is True else (cache or None)
    clock = _Clock()
    sym = symmetry_reduced_fingerprints
    metrics: dict[str, float | int | None] = {}
    n = len(generated)

    try:
        with clock.step("validity"):
            comp_valid, struct_valid = _validity(generated)
        with clock.step("fingerprints_generated"):
            gen_fp = compute_fingerprints(generated, n_jobs, store, progress, "fingerprints (generated)", sym)
        with clock.step("fingerprints_reference"):
            ref_fp = compute_fingerprints(reference, n_jobs, store, progress, "fingerprints (reference)", sym)
        valid = comp_valid & struct_valid & gen_fp.ok
        metrics.update(
            comp_valid=float(comp_valid.mean()), struct_valid=float(struct_valid.mean()), valid=float(valid.mean())
        )

        with clock.step("coverage"):
            metrics.update(coverage(gen_fp, ref_fp, cutoffs))

        picked = sample_indices(valid, n_samples, seed)
        samples: dict[str, dict[str, list[float]]] = {}
        with clock.step("distributions"):
            sample = [generated[i] for i in picked]
            pairs = {
                "density": (densities(sample), densities(reference)),
                "num_elements": (element_counts(sample), element_counts(reference)),
            }
            if gen_energy is not None and ref_energy is not None:
                pairs["energy_per_atom"] = (gen_energy[picked], ref_energy)
            for name, (gen_values, ref_values) in pairs.items():
                metrics[f"wdist_{name}"] = wasserstein(gen_values, ref_values)
                samples[name] = {"generated": list(map(float, gen_values)), "reference": list(map(float, ref_values))}
            sampled_fp = Fingerprints(gen_fp.structure[picked], gen_fp.composition[picked], gen_fp.ok[picked])
            metrics.update(diversity(sampled_fp))

        if ground_truth is not None:
            with clock.step("reconstruction"):
                gt_comp, gt_struct = _validity(ground_truth)
                gt_fp = compute_fingerprints(ground_truth, n_jobs, store, progress, "fingerprints (ground truth)", sym)
                gt_valid = gt_comp & gt_struct & gt_fp.ok
                metrics.update(
                    reconstruction(
                        generated, ground_truth, valid, gt_valid, reconstruction_tolerances, n_jobs, progress
                    )
                )

        valid_idx = np.flatnonzero(valid)
        with clock.step("uniqueness"):
            unique = np.zeros(n, dtype=bool)
            unique[valid_idx] = unique_mask([generated[i] for i in valid_idx], novelty_tolerances, n_jobs, progress)
        metrics.update(n_unique=int(unique.sum()), unique_rate=float(unique.sum() / n))
        if train is not None:
            with clock.step("novelty"):
                novel = np.zeros(n, dtype=bool)
                novel[valid_idx] = novel_mask(
                    [generated[i] for i in valid_idx], list(train), novelty_tolerances, n_jobs, progress
                )
            metrics.update(
                n_novel=int(novel.sum()),
                novel_rate=float(novel.sum() / n),
                n_unique_novel=int((unique & novel).sum()),
                un_rate=float((unique & novel).sum() / n),
            )
            if stable_flags is not None:
                sun = unique & novel & stable_flags
                metrics.update(
                    n_stable=int((stable_flags & valid).sum()), n_sun=int(sun.sum()), sun_rate=float(sun.sum() / n)
                )
    finally:
        if store is not None and cache is True:
            store.close()

    metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    return EvaluationReport(
        dataset=dataset,
        counts={
            "generated": n,
            "reference": len(reference),
            "train": 0 if train is None else len(train),
            "valid": int(valid.sum()),
            "sampled": len(picked),
            "fingerprint_failures_generated": int((~gen_fp.ok).sum()),
            "fingerprint_failures_reference": int((~ref_fp.ok).sum()),
        },
        metrics=metrics,
        timings=clock.timings,
        cpu_seconds=clock.cpu,
        settings={
            "coverage_cutoffs": asdict(cutoffs),
            "n_samples": n_samples,
            "seed": seed,
            "symmetry_reduced_fingerprints": sym,
            "reconstruction_tolerances": asdict(reconstruction_tolerances),
            "novelty_tolerances": asdict(novelty_tolerances),
        },
        samples=samples,
    )
