"""EquiformerV2-style network: forward+backward time (training) and forward time without gradients (sampling) per
batch of MP-20 crystals on CPU, per preset, with the average degree of the capped graph and the measured
rotation-equivariance error. Times are CPU seconds of this process (robust on a shared machine) and wall seconds;
the first pass is a warm-up. With ``--fit-steps N`` the first preset also learns, from 32 crystals, per-atom
targets computed from the structure (the vector sum of r_ij / r_ij^3 and the invariant sum of 1 / r_ij over
neighbours within 5 A) for N Adam steps, and reports the relative squared error on them and on 32 unseen crystals.

Usage: python benchmarks/equiformer.py [--presets cpu-small paper] [--batch-size 32] [--repeats 3] [--threads 1]
                                     [--micro-batch paper=4]
A preset with a micro-batch size runs the batch as micro-batches with gradient accumulation (same arithmetic, less
memory: the paper preset needs ~1 MB of activations per edge, ~7 GB for 32 MP-20 crystals); its equivariance error
is measured on the first micro-batch.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from e3nn import o3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crysloop.data.datasets import read_structures  # noqa: E402
from crysloop.data.graph import radius_graph_pbc  # noqa: E402
from crysloop.models.equiformer import EquiformerConfig, EquiformerV2, average_degree, graph_readout  # noqa: E402


def _batch(structures) -> tuple[torch.Tensor, ...]:
    z = torch.tensor([site.specie.Z for s in structures for site in s])
    feats = torch.nn.functional.one_hot(z - 1, 100).float()
    frac = torch.tensor(np.concatenate([s.frac_coords for s in structures]), dtype=torch.float32)
    lattice = torch.tensor(np.stack([s.lattice.matrix for s in structures]), dtype=torch.float32)
    batch = torch.repeat_interleave(torch.arange(len(structures)), torch.tensor([len(s) for s in structures]))
    return feats, frac, lattice, batch


def _rotation_error(network: EquiformerV2, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype) -> dict[str, float]:
    """Largest deviation from invariance (scalars) and equivariance (vectors) relative to the largest output."""
    network = network.to(dtype).eval()
    feats, frac, lattice, batch = (t.to(dtype) if t.is_floating_point() else t for t in inputs)
    rotation = o3.angles_to_matrix(*torch.tensor([0.9, 2.1, 4.0], dtype=dtype))
    with torch.no_grad():
        s0, v0 = network(feats, frac, lattice, batch)
        s1, v1 = network(feats, frac, lattice @ rotation.T, batch)
    return {
        "scalars": float((s1 - s0).abs().max() / s0.abs().max()),
        "vectors": float((v1 - v0 @ rotation.T).abs().max() / v0.abs().max()),
    }


def _field_targets(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-atom equivariant (sum of r/r^3) and invariant (sum of 1/r) targets over neighbours within 5 A."""
    _, frac, lattice, batch = inputs
    graph = radius_graph_pbc(frac, lattice, torch.bincount(batch), 5.0)
    field = torch.zeros(len(frac), 3).index_add_(0, graph.edge_index[0], graph.vectors / graph.distances[:, None] ** 3)
    inverse = torch.zeros(len(frac)).index_add_(0, graph.edge_index[0], 1.0 / graph.distances)
    return field, inverse


def _fit(
    config: EquiformerConfig, train: tuple[torch.Tensor, ...], test: tuple[torch.Tensor, ...], steps: int
) -> dict[str, float]:
    """Relative squared errors (vector, scalar) on train and test crystals after ``steps`` Adam steps."""
    torch.manual_seed(0)
    network = EquiformerV2(config, num_species=100)
    vector_head = torch.nn.Linear(config.channels, 1, bias=False)
    scalar_head = torch.nn.Linear(config.channels, 1)
    params = [*network.parameters(), *vector_head.parameters(), *scalar_head.parameters()]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    field, inverse = _field_targets(train)
    field_scale, inverse_mean, inverse_std = field.pow(2).mean().sqrt(), inverse.mean(), inverse.std()

    def errors(inputs, field, inverse):
        scalars, vectors = network(*inputs)
        predicted_field = vector_head(vectors.transpose(1, 2)).squeeze(-1) * field_scale
        predicted_inverse = scalar_head(scalars).squeeze(-1) * inverse_std + inverse_mean
        return (
            (predicted_field - field).pow(2).mean() / field.pow(2).mean(),
            (predicted_inverse - inverse).pow(2).mean() / inverse.var(),
        )

    start = time.process_time()
    for _ in range(steps):
        loss = sum(errors(train, field, inverse))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        train_errors, test_errors = errors(train, field, inverse), errors(test, *_field_targets(test))
    return {
        "steps": steps,
        "cpu_s": round(time.process_time() - start, 1),
        "train_vector": float(train_errors[0]),
        "train_scalar": float(train_errors[1]),
        "test_vector": float(test_errors[0]),
        "test_scalar": float(test_errors[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cpu-small", "paper"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--micro-batch", nargs="*", default=["paper=4"], metavar="PRESET=SIZE")
    parser.add_argument("--fit-steps", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mp_20_sample" / "train.csv.gz")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    micro_batches = {key: int(value) for key, value in (item.split("=") for item in args.micro_batch)}
    records = read_structures(args.data, progress=False)
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(0))[: args.batch_size].tolist()
    structures = [records[i].structure for i in order]
    inputs = _batch(structures)
    result: dict[str, object] = {
        "batch_size": args.batch_size,
        "atoms": len(inputs[0]),
        "threads": args.threads,
        "data": args.data.name,
    }
    for name in args.presets:
        config = EquiformerConfig.preset(name)
        degree = average_degree(
            inputs[1],
            inputs[2],
            torch.bincount(inputs[3]),
            config.cutoff,
            config.max_neighbors,
            config.neighbor_tolerance,
        )
        torch.manual_seed(0)
        network = EquiformerV2(config, num_species=100, cond_dim=256).train()
        cond = torch.randn(args.batch_size, 256)
        micro = micro_batches.get(name, args.batch_size)
        chunks = [structures[i : i + micro] for i in range(0, args.batch_size, micro)]
        wall, cpu = [], []
        for _ in range(args.repeats + 1):
            start, start_cpu = time.perf_counter(), time.process_time()
            for chunk, chunk_cond in zip(chunks, cond.split(micro)):
                chunk_inputs = _batch(chunk)
                scalars, vectors = network(*chunk_inputs, cond=chunk_cond)
                loss = graph_readout(scalars, chunk_inputs[3], len(chunk)).pow(2).mean() + vectors.pow(2).mean()
                loss.backward()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        network.eval()
        forward_cpu = []
        with torch.no_grad():
            for _ in range(args.repeats + 1):
                start_cpu = time.process_time()
                for chunk, chunk_cond in zip(chunks, cond.split(micro)):
                    network(*_batch(chunk), cond=chunk_cond)
                forward_cpu.append(time.process_time() - start_cpu)
        encoder = EquiformerV2(config, num_species=100, cond_dim=0)
        result[name] = {
            "params": sum(p.numel() for p in network.parameters()),
            "avg_degree": round(degree, 2),
            "forward_backward_cpu_s": round(float(np.median(cpu[1:])), 3),
            "forward_backward_wall_s": round(float(np.median(wall[1:])), 3),
            "forward_only_cpu_s": round(float(np.median(forward_cpu[1:])), 3),
            "micro_batch": micro,
            "rotation_error_float32": _rotation_error(encoder, _batch(chunks[0]), torch.float32),
            "rotation_error_float64": _rotation_error(encoder, _batch(chunks[0]), torch.float64),
        }
        print(name, result[name], flush=True)
    if args.fit_steps:
        first = [records[i].structure for i in range(64)]  # train on the file's first 32 crystals, test on the next 32
        fit = _fit(EquiformerConfig.preset(args.presets[0]), _batch(first[:32]), _batch(first[32:]), args.fit_steps)
        result["fit"] = {"preset": args.presets[0], **fit}
        print("fit", result["fit"], flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
