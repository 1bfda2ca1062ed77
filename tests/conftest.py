"""Shared fixtures: the repository on sys.path, real Fashion-MNIST (skipped with a
reason where it is not installed) and a small CNN trained for one quick epoch."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import model as core  # noqa: E402


@pytest.fixture(scope="session")
def quick_data():
    try:
        return core.load_data(core.PROTOCOLS["standard"], quick=True)
    except core.UserError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")


@pytest.fixture(scope="session")
def small_model(quick_data):
    """The standard CNN after 2 epochs on 2,000 images: accurate enough (~70%) that
    attacks have something to break."""
    core.keras.utils.set_random_seed(0)
    m = core.compile_model(core.build_standard_cnn(), core.PROTOCOLS["standard"])
    m.fit(quick_data.x_train, quick_data.y_train, epochs=2, batch_size=64, verbose=0)
    return m


@pytest.fixture(scope="session")
def attack_set(quick_data):
    idx = core.attack_subset(len(quick_data.y_test), 200)
    return quick_data.x_test[idx], quick_data.y_test[idx].astype(np.int32)


def run_script(*args, cwd=ROOT, timeout=600):
    """Run one of the repository's scripts as a user would; returns the finished process."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(proc):
    """A bad input ends with a non-zero exit and one line on stderr, no traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "error" in lines[0]
