"""attacks/outcome_store.py through suite.Target.outcome: an outcome measured once is read
back, not measured again; anything that could change it (the model's weights, the
budget, the seed, the images, the attack) misses the store; and an evaluation killed
mid-way and restarted writes the same tables as one that ran through."""
import csv
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_S, ROOT

from fashion_defenses.attacks import outcome_store, suite
from fashion_defenses.framework import keras


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(suite.OUTCOMES, "folder", tmp_path / "outcomes")
    return tmp_path / "outcomes"


def forbid_attacks(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("attacked again: the stored outcome was not used")
    monkeypatch.setattr(suite.Attack, "run", refuse)


def test_an_outcome_is_measured_once_and_anything_that_changes_it_misses(store, small_model, attack_set,
                                                                         monkeypatch):
    x, y = attack_set[0][:60], attack_set[1][:60]
    target, pgd = suite.plain_target(small_model), suite.SUITE["PGD-10"]
    first = target.outcome(pgd, x, y, 0.1, seed=0)
    assert len(list(store.rglob("*.npy"))) == 1
    other = keras.models.clone_model(small_model)
    other.set_weights([w + 1e-3 for w in small_model.get_weights()])
    forbid_attacks(monkeypatch)
    np.testing.assert_array_equal(target.outcome(pgd, x, y, 0.1, seed=0), first)
    for changed in (lambda: target.outcome(pgd, x, y, 0.05, seed=0),
                    lambda: target.outcome(pgd, x, y, 0.1, seed=1),
                    lambda: target.outcome(pgd, x[:30], y[:30], 0.1, seed=0),
                    lambda: target.outcome(suite.SUITE["PGD-20"], x, y, 0.1, seed=0),
                    lambda: target.outcome(pgd, x, y, 0.1, seed=0, only=np.arange(60) < 30),
                    lambda: suite.plain_target(other).outcome(pgd, x, y, 0.1, seed=0)):
        with pytest.raises(AssertionError, match="attacked again"):
            changed()


def test_an_outcome_measured_by_other_attack_code_misses(store, small_model, attack_set, monkeypatch, tmp_path):
    """Outcomes are keyed by the attack and defense code too (outcome_store.CODE): after
    an edit to one of those files, nothing measured before it is read back."""
    x, y = attack_set[0][:30], attack_set[1][:30]
    target, pgd = suite.plain_target(small_model), suite.SUITE["PGD-10"]
    target.outcome(pgd, x, y, 0.1, seed=0)
    package = Path(outcome_store.__file__).resolve().parent.parent
    copy = tmp_path / "package"
    for name in outcome_store.CODE:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(package / name, copy / name)
    assert outcome_store.code_fingerprint(copy) == outcome_store.code_fingerprint(package)
    for name in outcome_store.CODE:     # an edit to any of them: another key
        edited = copy / name
        before = edited.read_text()
        edited.write_text(before + "\n# an edit\n")
        assert outcome_store.code_fingerprint(copy) != outcome_store.code_fingerprint(package), name
        edited.write_text(before)
    (copy / "attacks/gradient.py").write_text((package / "attacks/gradient.py").read_text() + "\n# an edit\n")
    monkeypatch.setattr(suite.OUTCOMES, "_code", outcome_store.code_fingerprint(copy))
    forbid_attacks(monkeypatch)
    with pytest.raises(AssertionError, match="attacked again"):
        target.outcome(pgd, x, y, 0.1, seed=0)


def test_without_a_store_nothing_is_remembered(small_model, attack_set, monkeypatch):
    monkeypatch.setattr(suite.OUTCOMES, "folder", None)
    x, y = attack_set[0][:20], attack_set[1][:20]
    suite.plain_target(small_model).outcome(suite.SUITE["FGSM"], x, y, 0.1, seed=0)
    forbid_attacks(monkeypatch)
    with pytest.raises(AssertionError, match="attacked again"):
        suite.plain_target(small_model).outcome(suite.SUITE["FGSM"], x, y, 0.1, seed=0)


def test_transfer_examples_are_crafted_once_and_read_back_exactly(store, small_model, attack_set, monkeypatch):
    x, y = attack_set[0][:40], attack_set[1][:40]
    first = suite.transfer_examples(small_model, x, y, (0.1,), "FGSM-k", seed=0)
    assert len(list(store.rglob("*.npy"))) == 2
    forbid_attacks(monkeypatch)
    again = suite.transfer_examples(small_model, x, y, (0.1,), "FGSM-k", seed=0)
    for (label, eps, x_adv), (label2, eps2, x_adv2) in zip(first, again):
        assert (label, eps) == (label2, eps2) and x_adv2.dtype == x_adv.dtype
        np.testing.assert_array_equal(x_adv2, x_adv)
    with pytest.raises(AssertionError, match="attacked again"):
        suite.transfer_examples(small_model, x, y, (0.1,), "FGSM-k", seed=1)


def evaluation_command(results, models):
    return [sys.executable, "evaluation.py", "--quick", "--defenses", "undefended CNN", "--results-dir",
            str(results), "--models-dir", str(models)]


def table(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_an_evaluation_killed_midway_resumes_to_the_same_tables(quick_run, tmp_path):
    """SIGKILL an evaluation of the undefended CNN once some outcomes are stored,
    restart it: the restart reuses what was stored, and its table equals the quick
    chain's uninterrupted evaluation of that defense (same models, same seed)."""
    resumed = tmp_path / "resumed"
    proc = subprocess.Popen(evaluation_command(resumed, quick_run.models), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + HANG_S
    while len(list((resumed / ".outcomes").rglob("*.npy"))) < 3 and time.time() < deadline:
        time.sleep(0.2)
    proc.kill()
    _, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == -signal.SIGKILL, err
    assert not (resumed / "evaluation_standard_subset.csv").exists()   # nothing half-written
    partial = len(list((resumed / ".outcomes").rglob("*.npy")))
    again = subprocess.run(evaluation_command(resumed, quick_run.models), cwd=ROOT, capture_output=True,
                           text=True, timeout=HANG_S)
    assert again.returncode == 0, again.stderr
    assert 3 <= partial < len(list((resumed / ".outcomes").rglob("*.npy")))
    uninterrupted = [row for row in table(quick_run.results / "evaluation_standard.csv")
                     if row["defense"] == "undefended CNN"]
    assert table(resumed / "evaluation_standard_subset.csv") == uninterrupted


class Shift(keras.layers.Layer):
    def __init__(self, by=0.0, **kwargs):
        super().__init__(**kwargs)
        self.by = by

    def call(self, x):
        return x + self.by

    def get_config(self):
        return {**super().get_config(), "by": self.by}


def test_a_models_fingerprint_is_what_the_model_is_not_where_its_code_lives(monkeypatch):
    """Keras writes a custom layer's Python module into the model's config; the
    fingerprint (which also seeds a randomized defense's noise) ignores it, and still
    sees every setting."""
    def fingerprint(by=0.5):
        model = keras.Sequential([keras.Input((4,), name="x"), Shift(by, name="shift")], name="m")
        return outcome_store.model_fingerprint(model)
    here = fingerprint()
    monkeypatch.setattr(Shift, "__module__", "somewhere.else")
    assert fingerprint() == here
    assert fingerprint(by=0.25) != here
