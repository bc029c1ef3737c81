"""ConditionCDVAE+: CDVAE with an EquiformerV2-style (or DimeNet++) encoder, an EquiformerV2-style score decoder,
low-rank multimodal fusion of property and formula conditions, and a conditional WGAN-GP latent prior.

Modules: ``config`` (settings, presets), ``encoders``, ``conditions``, ``fusion`` (LMF), ``decoder``, ``model``
(heads and losses), ``langevin`` (annealed Langevin decoding), ``gan`` (latent WGAN-GP), ``training``,
``sampling``, ``checkpoints``.
"""

from crysloop.models.cdvae.checkpoints import (
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    shipped_checkpoint_path,
)
from crysloop.models.cdvae.config import FORMULA, CDVAEConfig
from crysloop.models.cdvae.gan import GANConfig, LatentGAN, train_latent_gan
from crysloop.models.cdvae.model import MODEL_KIND, ConditionCDVAE
from crysloop.models.cdvae.sampling import reconstruct, sample_structures
from crysloop.models.cdvae.training import finetune_cdvae, train_cdvae

__all__ = [
    "FORMULA",
    "MODEL_KIND",
    "CDVAEConfig",
    "ConditionCDVAE",
    "GANConfig",
    "LatentGAN",
    "finetune_cdvae",
    "load_checkpoint",
    "reconstruct",
    "resolve_checkpoint",
    "sample_structures",
    "save_checkpoint",
    "shipped_checkpoint_path",
    "train_cdvae",
    "train_latent_gan",
]
