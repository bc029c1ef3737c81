"""``crysloop evaluate``: score a generated set against a reference (and training) set with CDVAE/DiffCSP metrics."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crysloop.errors import InputError

app = typer.Typer(help="Evaluate generated crystals: validity, coverage, distributions, match rate, S.U.N.")
console = Console()


def _values(records, key: str | None, what: str) -> list[float] | None:
    """Per-record property ``key`` when every record has it, else None."""
    if key is None or not all(key in r.properties and r.properties[key] is not None for r in records):
        return None
    try:
        return [float(r.properties[key]) for r in records]
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: property {key!r} is not numeric ({exc})") from exc


@app.callback(invoke_without_command=True)
def evaluate_command(
    generated: Path = typer.Option(..., "--generated", help="Generated crystals: CSV[.gz], extxyz, CIF/POSCAR folder."),
    reference: Path = typer.Option(..., "--reference", help="Reference crystals (the test split)."),
    train: Path = typer.Option(None, "--train", help="Training crystals, for novelty and S.U.N."),
    ground_truth: Path = typer.Option(
        None, "--ground-truth", help="Crystals paired row by row with --generated: structure-prediction match rate."
    ),
    dataset: str = typer.Option("mp20", "--dataset", help="mp20, perov5 or carbon24 (coverage thresholds)."),
    coverage_cutoffs: str = typer.Option(
        None, "--coverage-cutoffs", help="STRUCT,COMP fingerprint thresholds for other datasets, e.g. 0.4,10."
    ),
    out: Path = typer.Option(Path("evaluation"), "--out", help="Folder for report.json, report.md and the plots."),
    energy_key: str = typer.Option(
        "energy_per_atom", "--energy-key", help="Property with energy per atom in both sets (used when present)."
    ),
    stability_key: str = typer.Option(
        "e_above_hull", "--stability-key", help="Property of generated crystals with energy above hull (eV/atom)."
    ),
    hull_threshold: float = typer.Option(0.1, "--hull-threshold", help="Stable if energy above hull <= this."),
    n_samples: int = typer.Option(1000, "--n-samples", help="Valid crystals drawn for distribution metrics."),
    seed: int = typer.Option(0, "--seed"),
    jobs: int = typer.Option(None, "--jobs", help="Worker processes (default: all CPUs)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the fingerprint cache."),
    fast: bool = typer.Option(False, "--fast", help="Symmetry-reduced fingerprints: ~2x faster, not bit-exact."),
    layered: bool = typer.Option(
        False, "--layered", help="Also judge samples as vdW bilayers: layers, gaps, vacuum, layer-aware novelty."
    ),
) -> None:
    """Run the evaluation suite and write a JSON report, a Markdown summary and PNG plots."""
    from crysloop.data.datasets import read_structures
    from crysloop.evaluation import evaluate, write_report
    from crysloop.evaluation.coverage import coverage_cutoffs as resolve_cutoffs

    cutoffs = None
    if coverage_cutoffs:
        try:
            cutoffs = tuple(float(x) for x in coverage_cutoffs.split(","))
        except ValueError as exc:
            raise InputError(f"--coverage-cutoffs: expected two numbers like 0.4,10, got {coverage_cutoffs!r}") from exc
        if len(cutoffs) != 2:
            raise InputError(f"--coverage-cutoffs: expected two numbers like 0.4,10, got {coverage_cutoffs!r}")
    resolve_cutoffs(dataset, cutoffs)  # fail on an unknown dataset before reading any file
    gen = read_structures(generated, keep_overlaps=True)  # overlapping atoms: structurally invalid samples
    ref = read_structures(reference)
    train_records = read_structures(train) if train else None
    truth = read_structures(ground_truth) if ground_truth else None
    e_above_hull = _values(gen, stability_key, "generated")
    layer_metrics = None
    if layered:  # before the suite: a non-layered input fails fast
        from crysloop.evaluation.layers import layered_metrics

        known = train_records if train_records is not None else ref
        layer_metrics = layered_metrics([r.structure for r in gen], [r.structure for r in known])
    report = evaluate(
        [r.structure for r in gen],
        [r.structure for r in ref],
        [r.structure for r in train_records] if train_records is not None else None,
        dataset,
        ground_truth=[r.structure for r in truth] if truth is not None else None,
        generated_energy_per_atom=_values(gen, energy_key, "generated"),
        reference_energy_per_atom=_values(ref, energy_key, "reference"),
        stable=None if e_above_hull is None else [e <= hull_threshold for e in e_above_hull],
        coverage_thresholds=cutoffs,
        n_samples=n_samples,
        seed=seed,
        n_jobs=jobs,
        cache=not no_cache,
        progress=True,
        symmetry_reduced_fingerprints=fast,
    )
    report.metrics.update(layer_metrics or {})
    paths = write_report(report, out)
    table = Table(title=f"evaluation ({dataset}): {len(gen)} generated vs {len(ref)} reference", show_header=False)
    for key, value in report.metrics.items():
        table.add_row(key, "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value)))
    console.print(table)
    console.print(f"report: {paths['json']}  summary: {paths['markdown']}")
