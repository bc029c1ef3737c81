"""ConditionCDVAE+ benchmark: reconstruction for the EquiformerV2-style and DimeNet++ encoders at equal budget,
Langevin throughput at the paper's settings, formula adherence and a latent-space plot with and without fusion.

Reconstruction (CDVAE protocol): encode a test crystal (mu), decode with the heads and annealed Langevin dynamics,
compare with the truth by StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3), both crystals valid. Each encoder
trains from scratch for the same number of optimiser steps and batch size on the same crystals, with the same
EquiformerV2-style decoder (``cpu-small`` presets); only the encoder differs. perov-5 trains on its val split
(the train split is not in ../shared/data), MP-20 on the 847-row sample; both test on a seeded subset of test.
On CPU the decoding uses ``--recon-steps-per-level`` Langevin steps per noise level instead of the paper's 100.
Each test crystal is decoded twice: freely (the CDVAE figure) and, as a diagnostic, with its true atoms held fixed
(only the lattice from the head and the coordinates decoded), with per-crystal atom-count, formula and cell errors.

Generation (``--part generation``): unconditional samples of the checkpoint scored by ``crysloop evaluate``
(validity, COV-R/P, density and element-count Wasserstein distances) against the MP-20 test sample.

Condition adherence (``--part adherence``): formation energy per atom of crystals sampled toward -0.2, 0.0 and
mean -/+ 2 std eV/atom, relaxed with the screening MLIP, against relaxed elemental references; medians and their
shift relative to unconditional samples, and how many crystals were labelled.

Throughput: samples per second of annealed Langevin decoding at the paper's settings (50 levels x 100 steps,
step 1e-4 (sigma/sigma_min)^2) with the given checkpoint, timed over ``--throughput-levels`` full noise levels
and extrapolated to all 50 (every step costs the same: one decoder pass on the same batch).

Published reconstruction figures (CDVAE, Xie et al. 2022): perov-5 97.52 % / 0.0156, MP-20 45.43 % / 0.0356;
ConditionCDVAE+ on its heterostructure set: 25.35 % / 0.1842. The last line printed is one JSON object, holding
every part recorded in ``--results`` by this and earlier runs (each with its command line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crysloop.models.cdvae import CDVAEConfig, load_checkpoint, train_cdvae  # noqa: E402

PUBLISHED = {
    "cdvae_perov_5": [97.52, 0.0156],
    "cdvae_mp_20": [45.43, 0.0356],
    "condition_cdvae_plus_heterostructures": [25.35, 0.1842],
}


def _subset(records: list, n: int, seed: int) -> list:
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return [records[i] for i in order.tolist()]


@torch.no_grad()
def _held_out_losses(model, records: list, seed: int) -> dict:
    """The training loss terms on the test crystals (predicted lattice, fixed noise): how much of each crystal
    the latent carries, a finer signal than the match rate after a short training."""
    from crysloop.models.cdvae.training import as_tensors

    torch.manual_seed(seed)
    losses = model.loss(as_tensors(records, model.config).to(model.device), teacher_forcing=False)
    return {k: round(float(v), 4) for k, v in losses.items() if k != "kl"}


@torch.no_grad()
def _composition_head_accuracy(model, records: list) -> float:
    """Fraction of crystals whose k distinct elements are the k most probable of the composition head (on z_c
    from mu): whether the latent carries the chemistry at all, before any sampling."""
    from crysloop.models.cdvae.conditions import composition_fractions
    from crysloop.models.cdvae.training import as_tensors

    data = as_tensors(records, model.config).to(model.device)
    mu, _ = model.encode(data)
    config = model.config
    compositions = composition_fractions(data.atom_types, data.num_atoms, config.num_species)
    keep = torch.ones(len(mu), len(config.conditions), dtype=torch.bool, device=mu.device)
    logits = model.heads(model.fuse(mu, model.conditions(data.properties, compositions, keep)))[2]
    hits = []
    for atoms, row in zip(data.atom_types.split(data.num_atoms.tolist()), logits, strict=True):
        true = set((atoms - 1).tolist())
        hits.append(set(row.topk(len(true)).indices.tolist()) == true)
    return round(sum(hits) / len(hits), 3)


def _decode_diagnostics(predicted: list, truth: list) -> dict:
    """Where a reconstruction goes wrong: atom count, reduced formula, volume per atom and the sorted cell lengths
    of each decoded crystal against its truth (medians of the relative errors)."""
    import numpy as np

    same_count = [len(p) == len(t) for p, t in zip(predicted, truth, strict=True)]
    same_formula = [
        p.composition.reduced_formula == t.composition.reduced_formula for p, t in zip(predicted, truth, strict=True)
    ]
    volume = [abs(p.volume / len(p) / (t.volume / len(t)) - 1) for p, t in zip(predicted, truth, strict=True)]
    lengths = [
        float(np.abs(np.sort(p.lattice.abc) / np.sort(t.lattice.abc) - 1).max())
        for p, t in zip(predicted, truth, strict=True)
    ]
    return {
        "natom_accuracy": round(float(np.mean(same_count)), 3),
        "formula_accuracy": round(float(np.mean(same_formula)), 3),
        "median_volume_rel_error": round(float(np.nanmedian(volume)), 3),
        "median_max_length_rel_error": round(float(np.nanmedian(lengths)), 3),
    }


def _match(predicted: list, truth: list) -> dict:
    from crysloop.evaluation.matching import reconstruction
    from crysloop.evaluation.validity import validity

    valid = [validity(s).valid for s in predicted]
    figures = reconstruction(predicted, truth, valid, [validity(s).valid for s in truth], n_jobs=1)
    return {
        "match_rate_percent": round(100 * figures["match_rate"], 2),
        "rmse": None if figures["n_matched"] == 0 else round(figures["rms_dist"], 4),
        "n_matched": figures["n_matched"],
        "n_test": figures["n_pairs"],
        "valid_percent": round(100 * sum(valid) / len(valid), 1),
        **_decode_diagnostics(predicted, truth),
    }


def reconstruction_part(args) -> dict:
    """Train each encoder for the same budget on each dataset, then reconstruct the same test crystals, freely
    and (a diagnostic) with each crystal's true atoms held fixed. ``--models`` keeps the trained models: a rerun
    finds them there and only decodes."""
    from crysloop.data.datasets import read_structures
    from crysloop.models.cdvae.sampling import reconstruct_structures

    data = Path(args.data_dir)
    sets = {
        "perov_5": (data / "perov_5" / "val.csv.gz", data / "perov_5" / "test.csv.gz"),
        "mp_20": (data / "mp_20_sample" / "train.csv.gz", data / "mp_20_sample" / "test.csv.gz"),
    }
    results = {}
    for name in args.datasets:
        train_path, test_path = sets[name]
        train = read_structures(train_path, progress=False)
        train = _subset(list(train), args.n_train, args.seed) if args.n_train else list(train)
        test = _subset(list(read_structures(test_path, progress=False)), args.n_test, args.seed)
        for encoder in args.encoders:
            key = f"{name}_{encoder}"
            path = args.models / f"{key}_{args.steps}steps.pt"
            if path.exists():
                model, _ = load_checkpoint(path, device=args.device)
                from crysloop.models.cdvae.checkpoints import read_checkpoint

                train_s = read_checkpoint(path)["metadata"].get("vae_seconds")
            else:
                config = CDVAEConfig.preset(args.preset, encoder=encoder, batch_size=args.batch_size)
                start = time.monotonic()
                model, _ = train_cdvae(
                    train,
                    config,
                    device=args.device,
                    steps=args.steps,
                    seed=args.seed,
                    progress=False,
                    checkpoint_path=path,
                    log_path=args.models / f"{key}.log",
                )
                train_s = round(time.monotonic() - start, 1)
            results[key] = {
                "train_crystals": len(train),
                "train_steps": args.steps,
                "batch_size": args.batch_size,
                "train_seconds": train_s,
                "parameters": sum(p.numel() for p in model.parameters()),
                "langevin_steps_per_level": args.recon_steps_per_level,
                "test_losses": _held_out_losses(model, test, args.seed),
                "composition_head_element_accuracy": _composition_head_accuracy(model, test),
            }
            for mode, fixed in (("free", False), ("true_composition", True)):
                start = time.monotonic()
                predicted, truth = reconstruct_structures(
                    model, test, args.recon_steps_per_level, seed=args.seed, fixed_composition=fixed
                )
                results[key][mode] = {**_match(predicted, truth), "decode_seconds": round(time.monotonic() - start, 1)}
            print(json.dumps({key: results[key]}), file=sys.stderr, flush=True)
    return results


def throughput_part(args) -> dict:
    """Samples per second at the paper's Langevin settings, timed over whole noise levels."""
    from crysloop.models.cdvae.langevin import annealed_langevin
    from crysloop.models.cdvae.sampling import fused_latents

    model, gan = load_checkpoint(args.checkpoint, device=args.device)
    config = model.config
    generator = torch.Generator(device=model.device).manual_seed(args.seed)
    z_c = fused_latents(model, gan, args.throughput_batch, {}, None, 1, generator)
    natom_logits, lattice_std, composition_logits = model.heads(z_c)
    num_atoms = natom_logits[:, 1:].argmax(-1) + 1
    lattice = model.lattice_from_head(lattice_std, num_atoms)
    types = torch.full((int(num_atoms.sum()),), 8, device=model.device)
    full_sigmas = model.sigmas
    model.sigmas = full_sigmas[: args.throughput_levels]  # the first levels; each step costs the same
    start = time.monotonic()
    annealed_langevin(
        model, z_c, num_atoms, lattice, types, False, steps_per_level=100, step_lr=1e-4, generator=generator
    )
    if str(model.device).startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.monotonic() - start
    model.sigmas = full_sigmas
    steps = args.throughput_levels * 100
    per_step = elapsed / steps
    total_steps = config.num_noise_levels * 100
    return {
        "device": str(model.device),
        "batch": args.throughput_batch,
        "mean_atoms": float(num_atoms.float().mean()),
        "timed_steps": steps,
        "seconds_per_step": round(per_step, 4),
        "samples_per_second": round(args.throughput_batch / (per_step * total_steps), 5),
        "seconds_per_batch_full_schedule": round(per_step * total_steps, 1),
        "gpu": torch.cuda.is_available(),
    }


def formula_part(args) -> dict:
    """Fraction of samples with exactly the target stoichiometry, formula-conditioned vs unconditional."""
    from crysloop.models.cdvae import sample_structures

    model, gan = load_checkpoint(args.checkpoint, device=args.device)
    out = {}
    unconditional = sample_structures(
        model, gan, n=args.n_formula, steps_per_level=args.sample_steps_per_level, seed=args.seed
    )
    for formula in args.formulas:
        from pymatgen.core import Composition

        target = Composition(formula).reduced_formula
        conditioned = sample_structures(
            model, gan, formulas=[formula] * args.n_formula, steps_per_level=args.sample_steps_per_level, seed=args.seed
        )
        out[formula] = {
            "conditioned": sum(s.composition.reduced_formula == target for s in conditioned) / len(conditioned),
            "unconditional": sum(s.composition.reduced_formula == target for s in unconditional) / len(unconditional),
        }
    return out


def latent_part(args) -> dict:
    """PCA of test-set latents z and fused z_c, coloured by formation energy, written as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crysloop.data.datasets import read_structures
    from crysloop.models.cdvae.conditions import composition_fractions
    from crysloop.models.cdvae.training import as_tensors

    model, _ = load_checkpoint(args.checkpoint, device=args.device)
    records = list(read_structures(Path(args.data_dir) / "mp_20_sample" / "test.csv.gz", progress=False))
    data = as_tensors(records, model.config)
    with torch.no_grad():
        mu, _ = model.encode(data)
        keep = torch.ones(len(mu), len(model.config.conditions), dtype=torch.bool)
        comps = composition_fractions(data.atom_types, data.num_atoms, model.config.num_species)
        z_c = model.fuse(mu, model.conditions(data.properties, comps, keep))
    column = model.config.scalar_conditions.index("formation_energy_per_atom")
    energy = data.properties[:, column].numpy()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, (title, latent) in zip(axes, (("z (encoder)", mu), ("z_c = z + LMF(z, c)", z_c))):
        centred = latent - latent.mean(0)
        _, _, v = torch.pca_lowrank(centred, q=2, center=False)
        xy = (centred @ v[:, :2]).numpy()
        points = ax.scatter(xy[:, 0], xy[:, 1], c=energy, cmap="viridis", s=12)
        ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    fig.colorbar(points, ax=axes, label="formation energy (eV/atom)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "cdvae_latent_pca.png"
    fig.savefig(path, dpi=110)
    return {"png": str(path), "crystals": len(mu)}


def _formation_energies(structures: list, mlip: str, fmax: float, steps: int, mu: dict) -> tuple[list[float], int]:
    """Formation energy per atom after relaxation with the screening MLIP (converged, or at the step limit),
    against relaxed elemental references (``mu`` caches eV/atom per element), and how many relaxations converged;
    invalid structures and failed relaxations are left out."""
    from crysloop.evaluation.validity import structure_validity
    from crysloop.screening.hull import elemental_reference_structures
    from crysloop.screening.relax import relax_structures

    valid = [s for s in structures if structure_validity(s)]
    missing = sorted({el.symbol for s in valid for el in s.composition.elements} - set(mu))
    starts = [(el, start) for el in missing for start in elemental_reference_structures(el)]
    for (element, _), result in zip(
        starts, relax_structures([s for _, s in starts], mlip, fmax=fmax, steps=steps), strict=True
    ):
        if result.energy is not None:
            mu[element] = min(mu.get(element, float("inf")), result.energy / len(result.structure))
    energies, converged = [], 0
    for result in relax_structures(valid, mlip, fmax=fmax, steps=steps):
        if result.energy is None or result.status == "failed":
            continue
        comp = result.structure.composition
        if any(el.symbol not in mu for el in comp.elements):
            continue
        reference = sum(mu[el.symbol] * amount for el, amount in comp.element_composition.items())
        energies.append((result.energy - reference) / comp.num_atoms)
        converged += result.converged
    return energies, converged


def adherence_part(args) -> dict:
    """Formation energy (screening MLIP, after relaxation) of crystals sampled toward several targets vs
    unconditional samples: medians and the shift of each median relative to the unconditional one."""
    import statistics

    from crysloop.models.cdvae import sample_structures

    model, gan = load_checkpoint(args.checkpoint, device=args.device)
    mean, std = model.config.property_stats["formation_energy_per_atom"]
    targets = {"-0.2": -0.2, "0.0": 0.0, "low_tail": round(mean - 2 * std, 3), "high_tail": round(mean + 2 * std, 3)}
    mu: dict = {}
    runs = {"unconditional": {}} | {name: {"formation_energy_per_atom": value} for name, value in targets.items()}
    out: dict = {
        "mlip": args.mlip,
        "n_per_target": args.n_adherence,
        "targets": targets,
        "gan": gan is not None,
        "langevin_steps_per_level": args.sample_steps_per_level,
        "relax_fmax": 0.1,
        "relax_steps": args.relax_steps,
        "train_mean_std": [round(mean, 3), round(std, 3)],
    }
    for name, conditions in runs.items():
        structures = sample_structures(
            model,
            gan,
            n=args.n_adherence,
            conditions=conditions,
            steps_per_level=args.sample_steps_per_level,
            seed=args.seed,
        )
        energies, converged = _formation_energies(structures, args.mlip, 0.1, args.relax_steps, mu)
        out[name] = {
            "n_sampled": len(structures),
            "n_labelled": len(energies),
            "n_converged": converged,
            "median": round(statistics.median(energies), 4) if energies else None,
            "energies": [round(e, 3) for e in energies],
        }
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    base = out["unconditional"]["median"]
    for name, target in targets.items():
        median = out[name]["median"]
        if median is not None and base is not None:
            out[name]["shift_vs_unconditional"] = round(median - base, 4)
            out[name]["moved_toward_target"] = abs(median - target) < abs(base - target)
    return out


def generation_part(args) -> dict:
    """Unconditional samples of the checkpoint scored by ``crysloop evaluate`` (validity, COV-R/P, density and
    element-count distances, uniqueness, novelty) against the MP-20 test sample, with its train sample for novelty."""
    import subprocess

    from crysloop.models.cdvae import sample_structures

    model, gan = load_checkpoint(args.checkpoint, device=args.device)
    start = time.monotonic()
    structures = sample_structures(
        model, gan, n=args.n_generation, steps_per_level=args.sample_steps_per_level, seed=args.seed
    )
    sample_s = time.monotonic() - start
    folder = args.out / "generation"
    cifs = folder / "cifs"
    cifs.mkdir(parents=True, exist_ok=True)
    for i, structure in enumerate(structures):
        structure.to(filename=str(cifs / f"{i:04d}.cif"))
    data = Path(args.data_dir) / "mp_20_sample"
    command = [
        sys.executable,
        "-m",
        "crysloop",
        "evaluate",
        "--generated",
        str(cifs),
        "--reference",
        str(data / "test.csv.gz"),
        "--train",
        str(data / "train.csv.gz"),
        "--dataset",
        "mp20",
        "--out",
        str(folder / "report"),
        "--jobs",
        str(args.threads),
    ]
    start = time.monotonic()
    subprocess.run(
        command, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL
    )
    report = json.loads((folder / "report" / "report.json").read_text())
    return {
        "n_generated": len(structures),
        "langevin_steps_per_level": args.sample_steps_per_level,
        "sample_seconds": round(sample_s, 1),
        "evaluate_seconds": round(time.monotonic() - start, 1),
        "reference": "mp_20_sample test (142), train (847) for novelty",
        "command": " ".join(command[1:]),
        "counts": report["counts"],
        "metrics": report["metrics"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", nargs="+", default=["recon", "throughput", "formula", "latent"])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--datasets", nargs="+", default=["perov_5", "mp_20"])
    parser.add_argument("--encoders", nargs="+", default=["equiformer", "dimenet"])
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=60, help="Optimiser steps per encoder (the equal budget).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=0, help="Training crystals (0: all).")
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--recon-steps-per-level", type=int, default=2)
    parser.add_argument(
        "--models",
        type=Path,
        default=Path("/tmp/crysloop-cdvae-bench/models"),
        help="Where the reconstruction part keeps (and finds) its trained models.",
    )
    parser.add_argument("--checkpoint", default=None, help="For throughput/formula/latent (default: shipped).")
    parser.add_argument("--throughput-batch", type=int, default=16)
    parser.add_argument("--throughput-levels", type=int, default=1)
    parser.add_argument("--formulas", nargs="+", default=["MoS2", "SrTiO3", "NaCl"])
    parser.add_argument("--n-formula", type=int, default=8)
    parser.add_argument("--sample-steps-per-level", type=int, default=2)
    parser.add_argument("--n-adherence", type=int, default=8, help="Samples per formation-energy target.")
    parser.add_argument("--mlip", default="sevenn-l3i5", help="Screening MLIP for the adherence part.")
    parser.add_argument("--n-generation", type=int, default=100, help="Unconditional samples for --part generation.")
    parser.add_argument("--relax-steps", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/crysloop-cdvae-bench"))
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="JSON file the parts of every run are merged into (default: OUT/cdvae_results.json); "
        "the printed line holds all parts recorded there.",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results_path = args.results or args.out / "cdvae_results.json"
    result: dict = json.loads(results_path.read_text()) if results_path.exists() else {}
    result.update(benchmark="cdvae", preset=args.preset, device=args.device, published=PUBLISHED)
    parts = {
        "recon": reconstruction_part,
        "throughput": throughput_part,
        "formula": formula_part,
        "latent": latent_part,
        "adherence": adherence_part,
        "generation": generation_part,
    }
    for part in args.part:
        start = time.monotonic()
        figures = parts[part](args)
        # reconstruction results are per dataset and encoder: a run on one dataset keeps the other's
        result[part] = {**result.get(part, {}), **figures} if part == "recon" else figures
        result.setdefault("commands", {})[part] = "python benchmarks/cdvae.py " + " ".join(sys.argv[1:])
        result[f"{part}_seconds"] = round(time.monotonic() - start, 1)
    if "throughput" in args.part and not torch.cuda.is_available():
        result["gpu_note"] = "no GPU was available; throughput is CPU only"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
