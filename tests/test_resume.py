"""A training killed with SIGKILL and run again ends at the weights of a run that was
never interrupted, for every kind of training: plain, adversarial, the study's
fine-tuning with its snapshots, and noise training."""
import subprocess
import sys

import numpy as np
import pytest
import resume_worker as worker  # noqa: E402 (tests/ is on sys.path)
from conftest import HANG_S, ROOT

from fashion_defenses.models import load_model

WORKER = ROOT / "tests" / "resume_worker.py"


@pytest.mark.parametrize("kind", worker.KINDS)
def test_a_killed_training_resumes_to_the_uninterrupted_weights(kind, tmp_path, quick_data):
    worker.train(kind, tmp_path / "uninterrupted")
    folder = tmp_path / "killed"
    # killed mid-epoch (epoch 2, batch 3), then just after a finished epoch (as epoch 3 begins)
    for kill in ((1, 2), (2, -1)):
        run = subprocess.run([sys.executable, str(WORKER), kind, str(folder), *map(str, kill)],
                             capture_output=True, text=True, timeout=HANG_S)
        assert run.returncode == -9, run.stderr[-2000:]     # it died of SIGKILL, at that moment
    run = subprocess.run([sys.executable, str(WORKER), kind, str(folder)], capture_output=True, text=True,
                         timeout=HANG_S)
    assert run.returncode == 0, run.stderr[-2000:]
    names = sorted(p.stem for p in (tmp_path / "uninterrupted").glob("*.keras"))
    assert len(names) == {"study": 3}.get(kind, 1)      # the study's: its base CNN, the run and its snapshot
    for name in names:
        resumed, _ = load_model(folder, name)
        reference, _ = load_model(tmp_path / "uninterrupted", name)
        assert resumed is not None, name
        for a, b in zip(reference.get_weights(), resumed.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_an_outcome_on_a_randomized_defense_does_not_depend_on_what_ran_before(small_model, attack_set,
                                                                                  monkeypatch):
    """A stage resumed after a kill skips the outcomes it had stored, so the global
    random stream reaches the others in another state: each outcome must draw the same
    noise whatever ran before it (here: the very examples PGD makes through a smoothed
    classifier's noisy views, and the noisy deployed model's answers to Square)."""
    from fashion_defenses.attacks import suite
    from fashion_defenses.defenses import smoothing
    from fashion_defenses.framework import tf
    monkeypatch.setattr(suite.OUTCOMES, "folder", None)     # measured each time, not read back
    x, y = attack_set[0][:20], attack_set[1][:20]
    smoothed = smoothing.smoothed_target(small_model, 0.5, n_vote=20, draws=2, seed=0)
    seen = []

    def judge(x_adv, labels):
        seen.append(x_adv.copy())
        return smoothed.model.predict(x_adv, verbose=0).argmax(axis=1) == labels   # one noisy draw
    target = suite.Target(judge, smoothed.views, smoothed.model)
    for attack in (suite.SUITE["PGD-10"], suite.SUITE["Square"]):
        first = target.outcome(attack, x, y, 0.05, seed=0)
        tf.random.normal([1000])          # what an outcome skipped on resume would not have drawn
        again = target.outcome(attack, x, y, 0.05, seed=0)
        np.testing.assert_array_equal(seen[-2], seen[-1])
        np.testing.assert_array_equal(first, again)
