"""What a round shows a person: a Markdown table of the best candidates and the energy-above-hull distribution."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def best_candidates_markdown(rows: Sequence[Mapping], limit: int = 15) -> str:
    """Rows (formula, structure_hash, e_above_hull, stability, phonon_stable, ...) by energy above hull.

    Candidates of known stability come first; ``unknown`` ones (no compound known in their system, so the hull
    holds only the elements) follow, whatever their hull distance.
    """
    placed = [r for r in rows if r.get("e_above_hull") is not None and r.get("stability", "stable") != "unconverged"]
    ranked = sorted(placed, key=lambda r: (r.get("stability") == "unknown", r["e_above_hull"]))[:limit]
    lines = [
        "| # | formula | hash | E above hull (eV/atom) | stability | E form (eV/atom) | phonon-stable |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(ranked, 1):
        eform = row.get("formation_energy_per_atom")
        phonon = {True: "yes", False: "no", None: "-"}[row.get("phonon_stable")]
        lines.append(
            f"| {i} | {row['formula']} | `{row['structure_hash'][:10]}` | {row['e_above_hull']:.3f} | "
            f"{row.get('stability', '-')} | {'-' if eform is None else f'{eform:.3f}'} | {phonon} |"
        )
    if any(r.get("stability") == "unknown" for r in ranked):
        lines += [
            "",
            "_unknown: no compound of the chemical system is known, so its hull holds only the elements and "
            "the energy above hull is a formation energy, not a stability verdict._",
        ]
    return "\n".join(lines) if ranked else "_no screened candidates yet_"


def ehull_plot(per_round: Mapping[int, Sequence[float]], path: Path, threshold: float | None = None) -> Path:
    """Box-and-strip plot of energy above hull per round, saved as PNG."""
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    rounds = sorted(per_round)
    data = [list(per_round[r]) for r in rounds]
    if any(data):
        ax.boxplot([d or [float("nan")] for d in data], positions=rounds, widths=0.5, showfliers=False)
        for r, values in zip(rounds, data, strict=True):
            ax.scatter([r] * len(values), values, s=10, alpha=0.6, color="tab:blue")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", lw=1, ls="--", label=f"stable <= {threshold} eV/atom")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("round")
    ax.set_ylabel("energy above hull (eV/atom)")
    ax.set_title("MLIP energy above hull per round")
    ax.set_xticks(rounds)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def png_markdown(path: Path, alt: str) -> str:
    """Markdown that embeds a PNG inline (data URI), so the Prefect UI shows it without a file server."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{alt}](data:image/png;base64,{data})"
