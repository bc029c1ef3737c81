"""Write an :class:`EvaluationReport` as JSON, a Markdown summary and PNG distribution plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from crysloop.evaluation.report import EvaluationReport

_LABELS = {
    "density": ("Density (g/cm$^3$)", False),
    "num_elements": ("Number of elements", True),
    "energy_per_atom": ("Energy per atom (eV/atom)", False),
}


def plot_distribution(name: str, generated: list[float], reference: list[float], path: Path) -> Path:
    """Overlaid normalised histograms of one property, generated vs reference."""
    label, discrete = _LABELS.get(name, (name, False))
    values = np.concatenate([generated, reference]) if generated or reference else np.zeros(1)
    if discrete:
        bins = np.arange(values.min() - 0.5, values.max() + 1.5)
    else:
        bins = np.histogram_bin_edges(values[np.isfinite(values)], bins=50)
    figure = Figure(figsize=(5, 3.5), dpi=120)
    ax = figure.subplots()
    ax.hist(reference, bins=bins, density=True, alpha=0.5, label=f"reference (n={len(reference)})")
    ax.hist(generated, bins=bins, density=True, alpha=0.5, label=f"generated (n={len(generated)})")
    ax.set_xlabel(label)
    ax.set_ylabel("Probability density")
    ax.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_summary(report: EvaluationReport, plots: dict[str, str]) -> str:
    """A short Markdown page: counts, metrics, timings and the plots."""
    lines = [f"# Generative evaluation ({report.dataset})", "", "## Counts", "", "| | n |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.counts.items()]
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report.metrics.items()]
    lines += ["", "## Wall time per step (s)", "", "| step | s |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in report.timings.items()]
    cut = report.settings.get("coverage_cutoffs", {})
    lines += ["", f"Coverage thresholds: structure {cut.get('structure')}, composition {cut.get('composition')}.", ""]
    for name, file in plots.items():
        lines += [f"![{name}]({file})", ""]
    return "\n".join(lines)


def write_report(report: EvaluationReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and one PNG per property distribution into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for name, values in report.samples.items():
        path = plot_distribution(name, values["generated"], values["reference"], out / f"{name}.png")
        plots[name] = path.name
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2))
    paths["markdown"].write_text(markdown_summary(report, plots))
    paths.update({name: out / file for name, file in plots.items()})
    return paths
