"""Stand-ins for the VASP binary in DFT tests: atomate2's recorded-output mock and a fake VASP executable."""

from __future__ import annotations

import stat
from pathlib import Path

RELAX_1 = "Si_double_relax/relax_1"
RELAX_2 = "Si_double_relax/relax_2"


def write_fake_vasp(directory: Path, recorded: Path, failures: int, message: str) -> Path:
    """An executable that fails its first ``failures`` calls with a VASP error, then writes ``recorded`` outputs.

    A failing call prints ``message`` to stdout (custodian sends it to vasp.out) after writing a CONTCAR, as VASP
    does once an ionic step has started; later calls write the recorded vasprun.xml, OUTCAR and CONTCAR.
    """
    script = directory / "fake_vasp"
    counter = directory / "fake_vasp.calls"
    script.write_text(
        f"""#!/bin/bash
n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}
if [ $n -le {failures} ]; then
  cp POSCAR CONTCAR
  echo " {message}"
  exit 1
fi
for f in vasprun.xml OUTCAR CONTCAR; do gunzip -c {recorded}/outputs/$f.gz > $f; done
echo " reached required accuracy - stopping structural energy minimisation"
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def fake_vasp_calls(script: Path) -> int:
    """How many times the fake VASP ran."""
    counter = script.parent / "fake_vasp.calls"
    return int(counter.read_text()) if counter.exists() else 0
