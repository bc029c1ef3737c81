"""Files shipped inside the package (checkpoints, datasets, tables, campaigns), found one way everywhere."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """The path of a packaged asset, ``asset_path("checkpoints", "composition_lm.pt")``."""
    return Path(str(files("crysloop").joinpath("assets", *parts)))


def resolve_checkpoint(setting: str | Path | None, shipped: str) -> Path:
    """The file a checkpoint setting names.

    ``None`` or ``"shipped"`` is the packaged ``shipped`` file; an existing path is itself; a bare file name of a
    packaged checkpoint (``vdw-cdvae.pt``) is that file, so a campaign YAML works from any folder, while a file of
    the same name in the working folder wins; anything else is returned as given (the loader reports it missing).
    """
    if setting is None or str(setting) == "shipped":
        return asset_path("checkpoints", shipped)
    path = Path(setting)
    packaged = asset_path("checkpoints", path.name)
    if not path.exists() and path.name == str(path) and packaged.is_file():
        return packaged
    return path
