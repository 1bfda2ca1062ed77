"""A training killed with SIGKILL and run again ends at the weights of a run that was
never interrupted, for every kind of training: plain, adversarial, the study's
fine-tuning with its snapshots, and noise training."""
import subprocess
import sys

import numpy as np
import pytest

import resume_worker as worker  # noqa: E402 (tests/ is on sys.path)
from conftest import ROOT
from model import load_model

WORKER = ROOT / "tests" / "resume_worker.py"


@pytest.mark.parametrize("kind", worker.KINDS)
def test_a_killed_training_resumes_to_the_uninterrupted_weights(kind, tmp_path, quick_data):
    worker.train(kind, tmp_path / "uninterrupted")
    folder = tmp_path / "killed"
    # killed mid-epoch (epoch 2, batch 3), then just after a finished epoch (as epoch 3 begins)
    for kill in ((1, 2), (2, -1)):
        run = subprocess.run([sys.executable, str(WORKER), kind, str(folder), *map(str, kill)],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == -9, run.stderr[-2000:]     # it died of SIGKILL, at that moment
    run = subprocess.run([sys.executable, str(WORKER), kind, str(folder)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    names = sorted(p.stem for p in (tmp_path / "uninterrupted").glob("*.keras"))
    assert len(names) == {"study": 3}.get(kind, 1)      # the study's: its base CNN, the run and its snapshot
    for name in names:
        resumed, _ = load_model(folder, name)
        reference, _ = load_model(tmp_path / "uninterrupted", name)
        assert resumed is not None, name
        for a, b in zip(reference.get_weights(), resumed.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
