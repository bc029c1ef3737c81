"""Building CHGNet calculators from many threads at once must not swallow the process's stdout (issue 16)."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from crysloop.screening.potentials import get_calculator


@pytest.fixture(scope="module", autouse=True)
def chgnet_loaded() -> None:
    """Load the model before output is captured: CHGNet prints one line when its model is built (once a process)."""
    get_calculator("chgnet", "cpu")


def test_concurrent_calculator_construction_keeps_stdout(capsys):
    get_calculator("chgnet", "cpu")  # load the model once; the race is in the calculators' construction
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible so entries overlap
    before = sys.stdout
    start = threading.Barrier(16)
    errors: list[BaseException] = []

    def build() -> None:
        try:
            start.wait()
            for _ in range(20):
                get_calculator("chgnet", "cpu")
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=build) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert sys.stdout is before
    print("still here")
    captured = capsys.readouterr().out
    assert "still here" in captured
    assert "CHGNet will run on" not in captured


def test_other_threads_print_while_a_calculator_is_built(capsys):
    """Output of a thread that is not constructing a calculator is never dropped."""
    get_calculator("chgnet", "cpu")
    lines = [f"line {i}" for i in range(300)]

    def talk() -> None:
        for line in lines:
            print(line)
            time.sleep(0.0002)

    talker = threading.Thread(target=talk)
    talker.start()
    built = 0
    while talker.is_alive():
        get_calculator("chgnet", "cpu")
        built += 1
    talker.join()
    assert built > 0
    assert capsys.readouterr().out.splitlines() == lines
