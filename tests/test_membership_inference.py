"""membership_inference.py: metrics against sklearn, attacks that can fail (no
leakage between two non-member sets, high AUC and TPR at low FPR on a memorising
model, reference attacks included), the reference pool's halves, thresholds blind to
evaluation labels, the study's rule, and an end-to-end run."""
import csv
import json

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score, roc_curve

from conftest import assert_one_line_error
import membership_inference as mi
from cli import RunContext
from data import Data, PROTOCOLS
from defenses import Defense
from model import build_standard_cnn, compile_model, get_or_train, keras, load_model, save_model


def test_metrics_equal_sklearn_on_random_scores():
    rng = np.random.default_rng(0)
    is_member = rng.random(1000) < 0.5
    score = rng.normal(size=1000) + 0.5 * is_member
    decision = score > 0.2
    m = mi.mia_metrics(score, is_member, decision)
    assert list(m) == mi.metric_columns()
    assert m["auc"] == pytest.approx(roc_auc_score(is_member, score))
    assert m["balanced_acc"] == pytest.approx(balanced_accuracy_score(is_member, decision))
    assert m["f1"] == pytest.approx(f1_score(is_member, decision))
    fpr, tpr, _ = roc_curve(is_member, score, drop_intermediate=False)
    assert m["tpr_at_1%_fpr"] == pytest.approx(tpr[fpr <= 0.01].max())
    assert m["tp_at_1%_fpr"] == round(m["tpr_at_1%_fpr"] * m["n_members"]) and m["fp_at_1%_fpr"] <= 0.01 * m["n_nonmembers"]
    assert m["tpr_at_1%_fpr_ci_low"] < m["tpr_at_1%_fpr"] < m["tpr_at_1%_fpr_ci_high"]
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


def experiment(ctx, data, n, k=2, n_population=None):
    sets = mi.membership_sets(data, n)
    if n_population:
        sets.population = sets.population[:n_population]
    return mi.Experiment(ctx, data, sets, mi.reference_pool(data, sets, k, ctx.seed), False, False)


def test_reference_pool_puts_each_audited_example_in_half_of_the_references(quick_data):
    sets = mi.membership_sets(quick_data, 200)
    pool = mi.reference_pool(quick_data, sets, 4, seed=0)
    x, y, _, _ = mi.audited(quick_data, sets)
    np.testing.assert_array_equal(pool.x[pool.audited_positions], x)   # the same images, in audited()'s order
    np.testing.assert_array_equal(pool.y[pool.audited_positions], y)
    np.testing.assert_array_equal(pool.x[pool.population_positions], quick_data.x_test[sets.population])
    for positions in (pool.audited_positions, pool.population_positions):
        assert (pool.inside(positions).sum(axis=0) == 2).all()
    assert pool.size == min(2 * len(quick_data.y_train), len(quick_data.y_train) + 1000 + len(quick_data.y_val))
    assert len(sets.population) == 600
    assert not set(sets.population) & set(np.r_[sets.eval_nonmembers, sets.calib_nonmembers])


def test_two_sets_of_nonmembers_give_chance_auc(tmp_path, small_model, quick_data):
    """'Members' the target never saw (the references do train on half of them): every
    attack, the reference attacks included, must find nothing (AUC within noise of 0.5)."""
    unseen = Data(quick_data.x_test[:600], quick_data.y_test[:600], quick_data.x_val, quick_data.y_val,
                  quick_data.x_test[600:], quick_data.y_test[600:], np.arange(600), np.arange(500), np.arange(400))
    ctx = context(tmp_path)
    recipe = lambda c, d: get_or_train(c, "cnn", build_standard_cnn, d)  # noqa: E731
    defense = Defense("undefended CNN", "undefended", "cnn", train=None, recipe=recipe)
    rows = mi.attack_defense(experiment(ctx, unseen, 100), defense, small_model)
    seeds = {json.loads(p.read_text())["seed"] for p in tmp_path.glob("references/*/cnn.json")}
    assert len(seeds) == 2, "each reference model must start from its own initialisation"
    assert {r["attack"] for r in rows} == set(mi.ATTACKS)
    for r in rows:
        assert abs(r["auc"] - 0.5) < 0.12, r


def memorise(ctx, data):
    """A CNN that learns random labels by heart: only membership explains its confidence."""
    keras.utils.set_random_seed(ctx.seed)
    model = compile_model(build_standard_cnn(), PROTOCOLS["standard"])
    model.fit(data.x_train, data.y_train, epochs=40, batch_size=32, verbose=0)
    save_model(model, ctx.models_dir, "memo", {"seed": ctx.seed})


def test_every_attack_catches_a_memorising_model(tmp_path, quick_data):
    rng = np.random.default_rng(0)
    x, y = quick_data.x_train[:900], rng.integers(0, 10, 900)   # random labels
    data = Data(x[:300], y[:300], x[:10], y[:10], x[300:], y[300:], np.arange(300), np.arange(10), np.arange(600))
    ctx = context(tmp_path / "target")
    memorise(ctx, data)
    target = load_model(ctx.models_dir, "memo")[0]
    defense = Defense("memorising CNN", "undefended", "memo", train=None, recipe=memorise)
    rows = {r["attack"]: r for r in mi.attack_defense(experiment(ctx, data, 100), defense, target)}
    for attack in ("loss", "lira", "lira-online", "rmia", "rmia-offline"):
        assert rows[attack]["auc"] > 0.9, rows[attack]
        assert rows[attack]["tpr_at_1%_fpr"] > 0.1, rows[attack]
    assert rows["loss"]["balanced_acc"] > 0.75


def test_bad_arguments_end_with_one_line(main_in_process, quick_data):
    assert_one_line_error(*main_in_process(mi, "--references", "3"))
    assert_one_line_error(*main_in_process(mi, "--quick", "--members", "100000"))


def test_membership_inference_quick_end_to_end(quick_run):
    """Every defense of the quick catalogue that the stages before it trained is attacked."""
    proc = quick_run.runs["membership_inference.py"]
    assert proc.returncode == 0, proc.stderr
    with open(quick_run.results / "membership_inference_standard.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["attack"] for r in rows} == set(mi.ATTACKS)
    assert {r["references"] for r in rows if r["attack"] in mi.REFERENCE_ATTACKS} == \
        {"2 of the same recipe, each on 1,750 images (half of a 3,500-image pool)"}
    assert {r["model"] for r in rows} == {"standard_cnn", "standard_cnn_dual", "standard_cnn_at-pgd_eps0.1_ep1",
                                          "standard_cnn_noise0.25"}
    for r in rows:  # every metric can be recomputed from the saved scores
        saved = np.load(mi.scores_path(quick_run.results, r["model"], r["attack"]))
        assert float(r["auc"]) == pytest.approx(roc_auc_score(saved["is_member"], saved["score"]), abs=1e-4)
        assert saved["is_member"].sum() == 200 and len(saved["score"]) == 400
    assert (quick_run.results / "membership_inference_standard_roc.png").exists()
    with open(quick_run.results / "membership_inference_standard_leakage.csv") as f:
        leakage = list(csv.DictReader(f))
    assert {(r["model"], r["attack"]) for r in leakage} == \
        {(m, a) for m in ("standard_cnn_dual", "standard_cnn_at-pgd_eps0.1_ep1", "standard_cnn_noise0.25")
         for a in mi.LEAKAGE_ATTACKS}
    for r in leakage:
        assert float(r["d_auc_low"]) <= float(r["d_auc"]) <= float(r["d_auc_high"])


def test_the_paper_protocols_quick_run(paper_quick_run):
    """`make quick` runs it: the undefended CNN and the dual filter in front of it share
    one pair of matched references."""
    proc = paper_quick_run.runs["membership_inference.py"]
    assert proc.returncode == 0, proc.stderr
    with open(paper_quick_run.results / "membership_inference_paper.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["defense"] for r in rows} == {"undefended CNN", "dual filter (at prediction time)"}
    assert all(r["auc"] != "" for r in rows)
    references = list((paper_quick_run.models / "references").rglob("*.keras"))
    assert sorted(p.name for p in references) == ["paper_cnn.keras"] * 2


def test_the_paper_protocols_adversarial_training_is_not_matched_by_default(quick_data, tmp_path):
    """Its references would cost two fine-tuning runs of the slow CNN each: its rows say
    so and show no reference figure, unless --match-all."""
    ctx = RunContext(PROTOCOLS["paper"], seed=0, quick=True, models_dir=tmp_path, results_dir=tmp_path)
    sets = mi.membership_sets(quick_data, 100)
    pool = mi.reference_pool(quick_data, sets, 2, 0)
    at_row = Defense("study AT 3 ep b16", "adversarial training", "m", train=None)
    matched, why = mi.Experiment(ctx, quick_data, sets, pool, False, False).matched(at_row)
    assert not matched and "not matched" in why and "--match-all" in why
    assert mi.Experiment(ctx, quick_data, sets, pool, True, False).matched(at_row)[0]
    assert mi.Experiment(ctx, quick_data, sets, pool, False, False).matched(
        Defense("undefended CNN", "undefended", "m", train=None))[0]


def test_the_standard_protocol_matches_pgd_at_but_not_trades_by_default(quick_data, tmp_path):
    ctx = RunContext(PROTOCOLS["standard"], seed=0, quick=True, models_dir=tmp_path, results_dir=tmp_path)
    sets = mi.membership_sets(quick_data, 100)
    pool = mi.reference_pool(quick_data, sets, 2, 0)
    experiment = mi.Experiment(ctx, quick_data, sets, pool, False, False)
    pgd = Defense("PGD AT", "adversarial training", "m", train=None)
    trades = Defense("TRADES AT", "adversarial training", "m", train=None)
    assert experiment.matched(pgd)[0] and not experiment.matched(trades)[0]
    assert mi.Experiment(ctx, quick_data, sets, pool, True, False).matched(trades)[0]
