"""Grimme D3 dispersion on top of any ASE calculator (needed for layered and van der Waals materials).

Uses torch-dftd (pure PyTorch D3, zero or Becke-Johnson damping) and ASE's ``SumCalculator``; no hand-written D3.
Zero damping with PBE parameters matches the DFT-D3 (IVDW = 11) settings of the DFT stage.
"""

from __future__ import annotations

from ase.calculators.calculator import Calculator
from ase.calculators.mixing import SumCalculator
from ase.units import Bohr

from crysloop.errors import InputError
from crysloop.settings import resolve_device

D3_DAMPINGS = ("zero", "bj", "zerom", "bjm")


def d3_calculator(
    damping: str = "zero",
    xc: str = "pbe",
    device: str | None = None,
    cutoff: float = 95.0 * Bohr,
    cnthr: float = 40.0 * Bohr,
) -> Calculator:
    """A D3 dispersion calculator alone (energy, forces, stress), with torch-dftd's default cut-offs."""
    from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

    if damping not in D3_DAMPINGS:
        raise InputError(f"unknown D3 damping {damping!r}; choose one of {', '.join(D3_DAMPINGS)}")
    try:
        return TorchDFTD3Calculator(damping=damping, xc=xc, device=resolve_device(device), cutoff=cutoff, cnthr=cnthr)
    except (KeyError, ValueError) as exc:  # torch-dftd raises either for an unknown functional
        raise InputError(f"no D3 {damping}-damping parameters for functional {xc!r}") from exc


def with_d3(calculator: Calculator, damping: str = "zero", xc: str = "pbe", device: str | None = None) -> Calculator:
    """``calculator`` plus D3 dispersion: energies, forces and stresses are summed."""
    return SumCalculator([calculator, d3_calculator(damping, xc, device)])
