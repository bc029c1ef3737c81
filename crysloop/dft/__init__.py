"""DFT verification: VASP relaxations with paper presets through atomate2 and custodian, parsing and metrics."""

from crysloop.dft.metrics import DFTMetrics, dft_metrics
from crysloop.dft.parse import RelaxOutcome, incar_overrides, parse_run_dir
from crysloop.dft.presets import PRESETS, RunSettings, relax_maker, write_preset_inputs
from crysloop.dft.run import relax, relax_in_subprocess

__all__ = [
    "PRESETS",
    "DFTMetrics",
    "RelaxOutcome",
    "RunSettings",
    "dft_metrics",
    "incar_overrides",
    "parse_run_dir",
    "relax",
    "relax_in_subprocess",
    "relax_maker",
    "write_preset_inputs",
]
