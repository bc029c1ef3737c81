"""DiffCSP (Jiao et al., NeurIPS 2023): crystal structure prediction and ab initio generation by joint diffusion
of lattice and fractional coordinates, with property conditioning and classifier-free guidance (CrysVCD Stage II).

Modules: ``config`` (typed settings and presets), ``corruption`` (noise schedules and targets), ``denoiser``
(CSPNet), ``model`` (conditioning and loss), ``sampler`` (predictor-corrector sampling), ``training``
(train/fine-tune), ``checkpoints`` (save/load and the shipped model).
"""

from crysloop.data.tensors import CrystalTensors
from crysloop.models.diffcsp.checkpoints import load_checkpoint, save_checkpoint, shipped_checkpoint_path
from crysloop.models.diffcsp.config import DiffCSPConfig
from crysloop.models.diffcsp.model import DiffCSP
from crysloop.models.diffcsp.sampler import sample_structures, sample_tensors
from crysloop.models.diffcsp.training import finetune_diffcsp, records_to_tensors, train_diffcsp

__all__ = [
    "CrystalTensors",
    "DiffCSP",
    "DiffCSPConfig",
    "finetune_diffcsp",
    "load_checkpoint",
    "records_to_tensors",
    "sample_structures",
    "sample_tensors",
    "save_checkpoint",
    "shipped_checkpoint_path",
    "train_diffcsp",
]
