"""Small datasets shipped inside the package, for the demo, offline runs and the shipped checkpoints."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def mp20_mini_path() -> Path:
    """847 MP-20 training rows (CC BY 4.0), CDVAE CSV format."""
    return Path(str(files("crysloop") / "assets" / "datasets" / "mp_20_mini.csv.gz"))
