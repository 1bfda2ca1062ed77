"""membership_inference.py: metrics against sklearn, attacks that can fail (no
leakage between two non-member sets, high AUC on a memorising model), thresholds
blind to evaluation labels, the study's rule, and an end-to-end run."""
import csv
import json

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score, roc_curve

from conftest import assert_one_line_error
import membership_inference as mi
from cli import RunContext
from data import Data, PROTOCOLS
from model import build_standard_cnn, compile_model, keras


def test_metrics_equal_sklearn_on_random_scores():
    rng = np.random.default_rng(0)
    is_member = rng.random(1000) < 0.5
    score = rng.normal(size=1000) + 0.5 * is_member
    decision = score > 0.2
    m = mi.mia_metrics(score, is_member, decision)
    assert m["auc"] == pytest.approx(roc_auc_score(is_member, score))
    assert m["balanced_acc"] == pytest.approx(balanced_accuracy_score(is_member, decision))
    assert m["f1"] == pytest.approx(f1_score(is_member, decision))
    fpr, tpr, _ = roc_curve(is_member, score)
    assert m["tpr_at_1%_fpr"] == pytest.approx(tpr[fpr <= 0.01].max())
    assert m["advantage"] == pytest.approx(decision[is_member].mean() - decision[~is_member].mean())
    assert m["n_nonmembers"] == int((~is_member).sum())


def test_auc_interval_matches_the_bootstrap():
    """Hanley & McNeil's interval against an independent reference: the spread of
    sklearn's AUC over 2,000 bootstrap resamples (members and non-members resampled
    separately)."""
    rng = np.random.default_rng(1)
    is_member = np.r_[np.ones(800, bool), np.zeros(1200, bool)]
    score = rng.normal(size=2000) + 0.4 * is_member
    m = mi.mia_metrics(score, is_member, score > 0)
    members, nonmembers = np.flatnonzero(is_member), np.flatnonzero(~is_member)
    boot = [roc_auc_score(is_member[i], score[i]) for i in
            (np.r_[rng.choice(members, len(members)), rng.choice(nonmembers, len(nonmembers))]
             for _ in range(2000))]
    boot_low, boot_high = np.percentile(boot, [2.5, 97.5])
    assert m["auc_ci_low"] < m["auc"] < m["auc_ci_high"]
    assert m["auc_ci_low"] == pytest.approx(boot_low, abs=0.006)
    assert m["auc_ci_high"] == pytest.approx(boot_high, abs=0.006)


def test_the_studys_rule_on_a_hand_made_case():
    max_softmax = np.array([0.99995, 0.9999, 0.5, 1.0])
    is_member = np.array([True, True, False, False])
    decision = mi.study_decisions(max_softmax)
    np.testing.assert_array_equal(decision, [True, False, False, True])  # strict '>'
    m = mi.mia_metrics(max_softmax, is_member, decision)
    assert (m["accuracy"], m["advantage"], m["precision"], m["recall"], m["f1"]) == (0.5, 0.0, 0.5, 0.5, 0.5)


def test_threshold_is_the_best_one_on_the_calibration_data_alone():
    """The decisions are 'score >= t' with the t that a brute-force sweep finds best
    (balanced accuracy) on the calibration set; the evaluation labels are never seen."""
    rng = np.random.default_rng(1)
    calib_member = rng.random(400) < 0.5
    calib_score = rng.normal(size=400) + calib_member
    eval_score = rng.normal(size=300)
    candidates = np.unique(calib_score)
    balanced = [0.5 * ((calib_score[calib_member] >= t).mean() + (calib_score[~calib_member] < t).mean())
                for t in candidates]
    best = candidates[int(np.argmax(balanced))]
    first = mi.threshold_decisions(eval_score, calib_score, calib_member)
    np.testing.assert_array_equal(first, eval_score >= best)
    assert 0.05 < first.mean() < 0.95   # a threshold inside the data, not a degenerate one
    # the calibration labels do matter: flipping them moves the threshold
    flipped = mi.threshold_decisions(eval_score, calib_score, ~calib_member)
    assert not np.array_equal(first, flipped)


def context(tmp_path):
    return RunContext(PROTOCOLS["standard"], seed=0, quick=True, models_dir=tmp_path, results_dir=tmp_path)


def test_two_sets_of_nonmembers_give_chance_auc(tmp_path, small_model, quick_data):
    """Members and non-members both drawn from images the model never saw: every
    attack, shadow and LiRA included, must find nothing (AUC within noise of 0.5)."""
    unseen = Data(quick_data.x_test[:600], quick_data.y_test[:600], quick_data.x_val, quick_data.y_val,
                  quick_data.x_test[600:], quick_data.y_test[600:], np.arange(600), np.arange(500), np.arange(400))
    sets = mi.MembershipSets(np.arange(200), np.arange(200), np.arange(200, 400), np.arange(200, 400))
    ctx = context(tmp_path)
    shadows = mi.get_shadows(ctx, unseen, sets, 2, 600)
    shadow_seeds = {json.loads(p.read_text())["seed"] for p in tmp_path.glob("shadow_*.json")}
    assert len(shadow_seeds) == 2, "each shadow model must start from its own initialisation"
    rows = mi.attack_model(ctx, "target", small_model, unseen, sets, shadows)
    assert {r["attack"] for r in rows} == set(mi.ATTACKS)
    for r in rows:
        assert abs(r["auc"] - 0.5) < 0.1, r


def test_loss_attack_catches_a_memorising_model(tmp_path, quick_data):
    rng = np.random.default_rng(0)
    x, y = quick_data.x_train[:400], rng.integers(0, 10, 400)   # random labels: only memory helps
    data = Data(x[:200], y[:200], x[:10], y[:10], x[200:], y[200:], np.arange(200), np.arange(10), np.arange(200))
    keras.utils.set_random_seed(0)
    m = compile_model(build_standard_cnn(), PROTOCOLS["standard"])
    m.fit(data.x_train, data.y_train, epochs=60, batch_size=32, verbose=0)
    sets = mi.MembershipSets(np.arange(100), np.arange(100), np.arange(100, 200), np.arange(100, 200))
    rows = {r["attack"]: r for r in mi.attack_model(context(tmp_path), "memo", m, data, sets, None)}
    assert rows["loss"]["auc"] > 0.9
    assert rows["loss"]["balanced_acc"] > 0.75


def test_bad_arguments_end_with_one_line(main_in_process, quick_data):
    assert_one_line_error(*main_in_process(mi, "--shadows", "0"))
    assert_one_line_error(*main_in_process(mi, "--quick", "--members", "100000"))


def test_membership_inference_quick_end_to_end(quick_run):
    """Every defense of the quick catalogue that the stages before it trained is attacked."""
    proc = quick_run.runs["membership_inference.py"]
    assert proc.returncode == 0, proc.stderr
    with open(quick_run.results / "membership_inference_standard.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["attack"] for r in rows} == set(mi.ATTACKS)
    assert {r["model"] for r in rows} == {"standard_cnn", "standard_cnn_dual", "standard_cnn_at-pgd_eps0.1_ep1",
                                          "standard_cnn_noise0.25"}
    for r in rows:  # every metric can be recomputed from the saved scores
        saved = np.load(mi.scores_path(quick_run.results, r["model"], r["attack"]))
        assert float(r["auc"]) == pytest.approx(roc_auc_score(saved["is_member"], saved["score"]), abs=1e-4)
        assert saved["is_member"].sum() == 200 and len(saved["score"]) == 400
    assert (quick_run.results / "membership_inference_standard_roc.png").exists()
