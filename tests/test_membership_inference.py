"""Membership inference (experiments/membership_inference.py, privacy/report.py): metrics against sklearn, attacks
that can fail (no leakage between two non-member sets, high AUC and TPR at low FPR on
a memorising model, reference attacks included), the membership design (sizes,
independent halves), thresholds blind to evaluation labels, the study's rule, the
verdict rule, and end-to-end runs."""
import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest
from conftest import assert_one_line_error, run_script
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score, roc_curve

from fashion_defenses.context import RunContext
from fashion_defenses.data import PROTOCOLS, Data
from fashion_defenses.defenses.catalogue import Defense
from fashion_defenses.experiments import membership_inference as mi
from fashion_defenses.experiments import membership_models as mm
from fashion_defenses.framework import keras
from fashion_defenses.models import build_standard_cnn, compile_model, get_or_train, load_model, save_model
from fashion_defenses.privacy import attacks as ma
from fashion_defenses.privacy import design as md
from fashion_defenses.privacy import report as mr


def test_metrics_equal_sklearn_on_random_scores():
    rng = np.random.default_rng(0)
    is_member = rng.random(1000) < 0.5
    score = rng.normal(size=1000) + 0.5 * is_member
    decision = score > 0.2
    m = mr.mia_metrics(score, is_member, decision)
    assert list(m) == mr.metric_columns()
    assert m["auc"] == pytest.approx(roc_auc_score(is_member, score))
    assert m["balanced_acc"] == pytest.approx(balanced_accuracy_score(is_member, decision))
    assert m["f1"] == pytest.approx(f1_score(is_member, decision))
    fpr, tpr, _ = roc_curve(is_member, score, drop_intermediate=False)
    assert m["tpr_at_1%_fpr"] == pytest.approx(tpr[fpr <= 0.01].max())
    assert m["tp_at_1%_fpr"] == round(m["tpr_at_1%_fpr"] * m["n_members"])
    assert m["fp_at_1%_fpr"] <= 0.01 * m["n_nonmembers"]
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
    m = mr.mia_metrics(score, is_member, score > 0)
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
    decision = mr.study_decisions(max_softmax)
    np.testing.assert_array_equal(decision, [True, False, False, True])  # strict '>'
    m = mr.mia_metrics(max_softmax, is_member, decision)
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
    first = mr.threshold_decisions(eval_score, calib_score, calib_member)
    np.testing.assert_array_equal(first, eval_score >= best)
    assert 0.05 < first.mean() < 0.95   # a threshold inside the data, not a degenerate one
    # the calibration labels do matter: flipping them moves the threshold
    flipped = mr.threshold_decisions(eval_score, calib_score, ~calib_member)
    assert not np.array_equal(first, flipped)


def context(tmp_path):
    return RunContext(PROTOCOLS["standard"], seed=0, quick=True, models_dir=tmp_path, results_dir=tmp_path)


def experiment(ctx, data, n, models=4):
    return mi.Experiment(ctx, data, mm.design_for(data, n, models, ctx.seed), False, False)


def test_every_model_is_the_targets_size_and_every_example_has_one_in_and_one_out_reference(quick_data):
    """Complementary pairs: for every target, each controlled image has exactly one IN
    and one OUT reference, drawn independently of the target's membership; no target
    is calibrated on its own pair."""
    design = mm.design_for(quick_data, 200, 4, seed=0)
    x_c, y_c = mm.controlled_images(quick_data, design)
    np.testing.assert_array_equal(x_c[design.audited_positions[:200]], quick_data.x_train[:200])   # the study's sets
    np.testing.assert_array_equal(x_c[design.audited_positions[200:]], quick_data.x_test[:200])
    for fold in (0, 1):   # each fold holds half of each side
        assert (design.audited_fold[:200] == fold).sum() == (design.audited_fold[200:] == fold).sum() == 100
    everything = mm.design_for(quick_data, None, 4, seed=0)      # the default: every controlled image
    assert len(everything.audited_positions) == 2 * everything.m == 2 * len(quick_data.y_test)
    np.testing.assert_array_equal(everything.inside, design.inside)
    for r in range(1, 4):
        d = mm.model_data(quick_data, design, r)
        assert len(d.y_train) == len(quick_data.y_train) == len(set(d.train_index))
        np.testing.assert_array_equal(d.x_val, quick_data.x_val)      # validation: in no model's training data
    np.testing.assert_array_equal(design.inside[0], np.r_[np.ones(design.m, bool), np.zeros(design.m, bool)])
    np.testing.assert_array_equal(design.inside[1], ~design.inside[0])    # the defense's own model's complement
    np.testing.assert_array_equal(design.inside[3], ~design.inside[2])
    assert abs(design.inside[2, :design.m].mean() - 0.5) < 0.05            # a random half, not model 0's
    for t in range(4):
        refs = design.references(t)
        assert t // 2 not in {r // 2 for r in refs} and len(refs) == 2       # never its own pair
        assert (design.inside[refs].sum(axis=0) == 1).all()                  # one IN, one OUT, every example
        member = design.inside[t]
        assert abs(design.inside[refs[0]][member].mean() - design.inside[refs[0]][~member].mean()) < 0.06
    # the same halves for every recipe (they depend on the seed alone)
    np.testing.assert_array_equal(md.membership_design(2000, 1000, 200, 4, 0).inside, design.inside)
    for models in (2, 3, 5):
        with pytest.raises(ValueError, match="complementary pairs"):
            md.membership_design(2000, 1000, 200, models, 0)


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
    assert len(seeds) == 3, "each reference model must start from its own initialisation"
    assert {r["attack"] for r in rows} == set(mr.ATTACKS) and {r["target"] for r in rows} == {0, 1, 2, 3}
    for r in rows:
        if r["target"] == 0:   # the others did train on their members
            # the AUC of two exchangeable samples: mean 0.5, sd sqrt((m + n + 1) / (12 m n)) (Mann-Whitney), 0.041
            # for 100 + 100; 4.5 sd leaves each attack a 7e-6 chance of failing on any CPU's arithmetic, and a
            # leak (members told apart by anything but the model) gives an AUC near 1
            m, n = r["n_members"], r["n_nonmembers"]
            assert abs(r["auc"] - 0.5) < 4.5 * np.sqrt((m + n + 1) / (12 * m * n)), r


def memorise(ctx, data):
    """A CNN that learns random labels by heart: only membership explains its confidence."""
    keras.utils.set_random_seed(ctx.seed)
    model = compile_model(build_standard_cnn(), PROTOCOLS["standard"])
    model.fit(data.x_train, data.y_train, epochs=40, batch_size=32, verbose=0)
    save_model(model, ctx.models_dir, "memo", {"seed": ctx.seed})


def score_file(results_dir, attack, target):
    saved = np.load(mr.scores_path(results_dir, "standard", "memo", attack, target=target))
    return saved["score"], saved["is_member"]


def test_every_attack_catches_a_memorising_model(tmp_path, quick_data):
    rng = np.random.default_rng(0)
    x, y = quick_data.x_train[:1100], rng.integers(0, 10, 1100)   # random labels
    data = Data(x[:300], y[:300], x[900:], y[900:], x[300:900], y[300:900], np.arange(300), np.arange(200),
                np.arange(600))
    ctx = context(tmp_path / "target")
    memorise(ctx, data)
    target = load_model(ctx.models_dir, "memo")[0]
    defense = Defense("memorising CNN", "undefended", "memo", train=None, recipe=memorise)
    all_rows = mi.attack_defense(experiment(ctx, data, 100), defense, target)
    for t in range(4):
        rows = {r["attack"]: r for r in all_rows if r["target"] == t}
        for attack in ("loss", "lira", "lira-online", "rmia", "rmia-offline"):
            assert rows[attack]["auc"] > 0.8, rows[attack]   # 0.94 to 0.996 measured
        # a memorised random label does not survive every flip and shift: 0.85 to 0.89 measured
        assert rows["rmia-augmented"]["auc"] > 0.75, rows["rmia-augmented"]
        # TPR at 1% FPR rests on one false positive of ~100 non-members: another CPU's
        # arithmetic moved it from 0.24 to 0.16 (the loss attack, target 1), and RMIA's
        # memorised members tie at its top score. At 10% FPR the loss attack, both
        # LiRAs and offline RMIA found 0.83 to 0.99 of the members under both
        # arithmetic paths tried. (Online RMIA divides by references half of which
        # memorised the same random label: 0.22 to 0.72, so only its AUC is checked.)
        for attack in ("loss", "lira", "lira-online", "rmia-offline"):
            tp, members, _, _ = ma.tpr_at_fpr(*score_file(tmp_path / "target", attack, t), 0.1)
            assert tp / members > 0.5, rows[attack]
        assert rows["loss"]["balanced_acc"] > 0.75


def test_bad_arguments_end_with_one_line(main_in_process, quick_data):
    assert_one_line_error(*main_in_process("membership_inference", "--models", "0"))
    assert_one_line_error(*main_in_process("membership_inference", "--quick", "--members", "100000"))


def test_membership_inference_quick_end_to_end(quick_run):
    """Every defense of the quick catalogue that the stages before it trained is attacked."""
    proc = quick_run.runs["membership_inference.py"]
    assert proc.returncode == 0, proc.stderr
    with open(quick_run.results / "membership_inference_standard.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["attack"] for r in rows} == set(mr.ATTACKS)
    assert {r["references"] for r in rows if r["attack"] in mr.REFERENCE_ATTACKS} == \
        {mi.describe_design(md.membership_design(2000, 1000, None, 4, 0), 2000)}
    assert all(int(r["targets"]) == 4 for r in rows)
    assert {r["model"] for r in rows} == {"standard_cnn", "standard_cnn_dual", "standard_cnn_at-pgd_eps0.1_ep1",
                                          "standard_cnn_noise0.25"}
    for r in rows:  # every metric can be recomputed from the saved scores
        saved = np.load(mr.scores_path(quick_run.results, "standard", r["model"], r["attack"]))
        assert float(r["auc"]) == pytest.approx(roc_auc_score(saved["is_member"], saved["score"]), abs=1e-4)
        assert saved["is_member"].sum() == 1000 and len(saved["score"]) == 2000   # every controlled image
    assert (quick_run.results / "membership_inference_standard_roc.png").exists()
    with open(quick_run.results / "membership_inference_standard_leakage.csv") as f:
        leakage = list(csv.DictReader(f))
    defended = ("standard_cnn_dual", "standard_cnn_at-pgd_eps0.1_ep1", "standard_cnn_noise0.25")
    assert {(r["model"], r["attack"], r["target"]) for r in leakage} == \
        {(m, a, t) for m in defended for a in mr.LEAKAGE_ATTACKS for t in ("0", "1", "2", "3", "pooled")}
    for r in leakage:
        assert float(r["d_auc_low"]) <= float(r["d_auc"]) <= float(r["d_auc_high"])
    with open(quick_run.results / "membership_inference_standard_verdict.csv") as f:
        verdicts = list(csv.DictReader(f))
    assert len(verdicts) == 3 * len(mr.LEAKAGE_ATTACKS)
    assert {r["verdict_auc"] for r in verdicts} | {r["verdict_tpr"] for r in verdicts} <= set(mr.VERDICTS)
    with open(quick_run.results / "membership_inference_standard_targets.csv") as f:
        per_target = list(csv.DictReader(f))
    for r in per_target:   # each target's figures from its own score file
        saved = np.load(mr.scores_path(quick_run.results, "standard", r["model"], r["attack"],
                                       target=int(r["target"])))
        assert float(r["auc"]) == pytest.approx(roc_auc_score(saved["is_member"], saved["score"]), abs=1e-4)


def test_adversarial_queries_attack_the_undefended_and_adversarially_trained_models(quick_run, tmp_path):
    """Song et al.'s question, the README's sentence on it: PGD-10 queries of every
    audited image, on the undefended CNN and each adversarially trained model only,
    threshold attacks only; each score file behind its row, a verdict per defense."""
    results = tmp_path / "results"
    proc = run_script("membership_inference.py", "--quick", "--adversarial-queries", "--results-dir", results,
                      "--models-dir", quick_run.models)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = mr.table_stem(results, "standard", adversarial_queries=True)
    with open(f"{stem}.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["model"] for r in rows} == {"standard_cnn", "standard_cnn_at-pgd_eps0.1_ep1"}   # no filter, no noise
    assert {r["attack"] for r in rows} == {"study", "loss"}
    for r in rows:
        saved = np.load(mr.scores_path(results, "standard", r["model"], r["attack"], True))
        assert float(r["auc"]) == pytest.approx(roc_auc_score(saved["is_member"], saved["score"]), abs=1e-4)
        assert saved["is_member"].sum() == 1000 and len(saved["score"]) == 2000
    with open(f"{stem}_verdict.csv") as f:
        verdicts = list(csv.DictReader(f))
    assert [(r["model"], r["attack"]) for r in verdicts] == [("standard_cnn_at-pgd_eps0.1_ep1", "loss")]
    assert "PGD-10" in verdicts[0]["queries"]


def test_attacks_from_saved_outputs_alone_give_the_same_tables(quick_run, main_in_process, tmp_path):
    """The pipeline's way: one model's outputs written by its own job (membership_outputs.py) equal
    the all-in-one run's; the attacks from the saved outputs alone (--from-outputs, no
    model at hand) give the all-in-one run's table; a missing output file is one line."""
    results = tmp_path / "results"
    shutil.copytree(quick_run.results / "mia" / "outputs", results / "mia" / "outputs")
    saved = results / "mia" / "outputs" / "standard" / "standard_cnn" / "model1" / "standard_cnn.npz"
    saved.unlink()
    code, err = main_in_process("membership_inference", "--quick", "--from-outputs", "--results-dir", results,
                                "--models-dir", tmp_path / "no_models")
    assert_one_line_error(code, err)
    assert "model1/standard_cnn.npz is missing" in err and "membership_outputs.py" in err
    proc = run_script("membership_outputs.py", "--quick", "--defense", "undefended CNN", "--model", "1",
                      "--results-dir", results, "--models-dir", quick_run.models)
    assert proc.returncode == 0, proc.stderr
    ours, theirs = np.load(saved), np.load(quick_run.results / saved.relative_to(results))
    for key in theirs.files:
        np.testing.assert_array_equal(ours[key], theirs[key])
    proc = run_script("membership_inference.py", "--quick", "--from-outputs", "--results-dir", results,
                      "--models-dir", tmp_path / "no_models")
    assert proc.returncode == 0, proc.stderr
    table = lambda folder: {(r["model"], r["attack"]): r["auc"] for r in  # noqa: E731
                            csv.DictReader(open(folder / "membership_inference_standard.csv"))}
    assert table(results) == table(quick_run.results)


def test_the_paper_protocols_quick_run(paper_quick_run):
    """`make quick` runs it: the undefended CNN and the dual filter in front of it share
    the three extra models of their recipe (its own model's complement and a second pair)."""
    proc = paper_quick_run.runs["membership_inference.py"]
    assert proc.returncode == 0, proc.stderr
    with open(paper_quick_run.results / "membership_inference_paper.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["defense"] for r in rows} == {"undefended CNN", "dual filter (at prediction time)"}
    assert all(r["auc"] != "" for r in rows)
    references = list((paper_quick_run.models / "references").rglob("*.keras"))
    assert sorted(p.name for p in references) == ["paper_cnn.keras"] * 3


def test_the_paper_protocols_adversarial_training_is_not_matched_by_default(quick_data, tmp_path, small_model):
    """Its extra models would cost two fine-tuning runs of the slow CNN each: its rows
    say so and show no reference figure, unless --match-all; the threshold attacks still
    attack its own model. Every standard defense is matched."""
    ctx = RunContext(PROTOCOLS["paper"], seed=0, quick=True, models_dir=tmp_path, results_dir=tmp_path)
    design = mm.design_for(quick_data, 100, 4, 0)
    at_row = Defense("study AT 3 ep b16", "adversarial training", "m", train=None)
    matched, why = mi.Experiment(ctx, quick_data, design, False, False).matched(at_row)
    assert not matched and "not matched" in why and "--match-all" in why
    rows = mi.attack_defense(mi.Experiment(ctx, quick_data, design, False, False), at_row, small_model)
    assert {r["target"] for r in rows} == {0} and {r["attack"] for r in rows} == set(mr.ATTACKS)
    assert {r["attack"] for r in rows if r["auc"] != ""} == set(mr.ATTACKS) - set(mr.REFERENCE_ATTACKS)
    assert mi.Experiment(ctx, quick_data, design, True, False).matched(at_row)[0]
    assert mi.Experiment(ctx, quick_data, design, False, False).matched(
        Defense("undefended CNN", "undefended", "m", train=None))[0]
    standard = dataclasses.replace(ctx, protocol=PROTOCOLS["standard"])
    for label in ("TRADES AT", "dual + PGD AT"):
        defense = Defense(label, "adversarial training", "m", train=None)
        assert mi.Experiment(standard, quick_data, design, False, False).matched(defense)[0]


def verdict_rows(differences, tpr=None, nonmembers=2000):
    """Leakage rows of one defense under RMIA, one per target: (d, low, high) in AUC
    and in TPR at 1% and 0.1% FPR (the same as in AUC unless given)."""
    return [{"defense": "X AT", "model": "x", "attack": "rmia", "target": t, "queries": "clean", "d_auc": d,
             "d_auc_low": lo, "d_auc_high": hi, "nonmembers": nonmembers,
             **dict(zip(("d_tpr", "d_tpr_low", "d_tpr_high"), tpr_row)),
             **dict(zip(("d_tpr01", "d_tpr01_low", "d_tpr01_high"), tpr_row))}
            for t, ((d, lo, hi), tpr_row) in enumerate(zip(differences, tpr or differences))]


def test_a_verdict_needs_every_target():
    less = [(-0.04, -0.06, -0.02), (-0.03, -0.05, -0.01), (-0.05, -0.07, -0.03)]
    assert mr.verdict_table(verdict_rows(less))[0]["verdict_auc"] == "leaks less"
    one_target_turns = less[:2] + [(-0.01, -0.03, 0.01)]
    assert mr.verdict_table(verdict_rows(one_target_turns))[0]["verdict_auc"] == "no verdict: not on every target"
    more = [(0.03, 0.01, 0.05)] * 3
    assert mr.verdict_table(verdict_rows(more))[0]["verdict_auc"] == "leaks more"
    # each metric has its own verdict: less by AUC, while the TPR at 1% FPR is no lower
    row = mr.verdict_table(verdict_rows(less, tpr=[(0.01, -0.01, 0.03)] * 3))[0]
    assert (row["verdict_auc"], row["verdict_tpr"]) == ("leaks less", "no verdict: not on every target")
    row = mr.verdict_table(verdict_rows(less))[0]
    assert row["d_auc_mean"] == pytest.approx(-0.04) and row["d_auc_sd"] == pytest.approx(0.01)
    assert row["targets"] == 3 and row["d_auc_per_target"].count("[") == 3


def test_a_verdict_at_0_1_percent_fpr_needs_enough_false_positives():
    """At 0.1% FPR, 2,000 non-members allow 2 false positives: no verdict, saying so;
    10,000 allow 10, and the verdict follows the intervals as at 1%."""
    less = [(-0.04, -0.06, -0.02)] * 4
    few = mr.verdict_table(verdict_rows(less, nonmembers=2000))[0]
    assert few["verdict_tpr01"].startswith("no verdict: 2 false positives allowed") and few["d_tpr01_mean"] == ""
    assert few["verdict_tpr"] == "leaks less"
    enough = mr.verdict_table(verdict_rows(less, nonmembers=10000))[0]
    assert enough["verdict_tpr01"] == "leaks less" and enough["false_positives_at_0.1%_fpr"] == 10
    turned = mr.verdict_table(verdict_rows(less, tpr=less[:3] + [(0.0, -0.01, 0.01)], nonmembers=10000))[0]
    assert turned["verdict_tpr01"] == "no verdict: not on every target"


def test_the_privacy_sentence_follows_the_verdicts():
    def table(rmia, loss):
        rows = []
        for attack, differences in (("rmia", rmia), ("loss", loss)):
            rows += [dict(r, attack=attack) for r in verdict_rows(differences)]
        return mr.verdict_table(rows)
    less = [(-0.04, -0.06, -0.02)] * 3
    none = [(0.0, -0.02, 0.02)] * 3
    sentence = mr.verdict_sentence(table(less, none), "rmia", metric="auc")
    assert sentence.startswith("by AUC, ") and "less for X AT (-0.040 on average; not the loss attack)" in sentence
    assert "no defense leaks more" in sentence
    assert "less for X AT (-4.00 pp on average; also the loss attack)" in mr.verdict_sentence(table(less, less), "rmia")
    turned = mr.verdict_sentence(table(less[:2] + [(-0.01, -0.03, 0.01)], none), "rmia")
    assert "no defense leaks less on every target" in turned and "X AT" not in turned


def test_cross_fitted_decisions_never_see_their_own_labels():
    """Each fold is decided by the threshold fitted on the other: changing one fold's
    labels moves the other fold's decisions, never its own."""
    rng = np.random.default_rng(3)
    is_member = rng.random(400) < 0.5
    score = rng.normal(size=400) + is_member
    fold = np.arange(400) % 2
    first = mr.decisions("loss", score, is_member, fold)
    flipped = is_member.copy()
    flipped[fold == 0] = ~flipped[fold == 0]
    second = mr.decisions("loss", score, flipped, fold)
    np.testing.assert_array_equal(first[fold == 0], second[fold == 0])
    assert (first[fold == 1] != second[fold == 1]).any()
    np.testing.assert_array_equal(mr.decisions("study", score, is_member, fold), score > 0.9999)


def test_the_headline_is_the_stronger_rmia_on_the_undefended_cnn():
    def row(attack, tpr, auc, defense="undefended CNN"):
        return {"defense": defense, "attack": attack, "tpr_at_1%_fpr_mean": tpr, "auc_mean": auc}
    assert mr.headline_attack([row("rmia", 0.02, 0.6), row("rmia-augmented", 0.03, 0.55)]) == "rmia-augmented"
    assert mr.headline_attack([row("rmia", 0.03, 0.6), row("rmia-augmented", 0.02, 0.7)]) == "rmia"
    assert mr.headline_attack([row("rmia", 0.02, 0.6), row("rmia-augmented", 0.02, 0.7)]) == "rmia-augmented"
    # another defense's figures do not choose it; without figures, privacy_meter's defaults
    assert mr.headline_attack([row("rmia", 0.03, 0.6), row("rmia-augmented", 0.5, 0.9, "PGD AT")]) == "rmia"
    assert mr.headline_attack([row("rmia", "", ""), row("rmia-augmented", "", "")]) == "rmia"


def test_augmented_queries_flip_and_shift_the_image():
    x = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)
    assert len(mm.AUGMENTATIONS) == 18 and mm.AUGMENTATIONS[0] == (False, 0, 0)
    np.testing.assert_array_equal(mm.augment(x, False, 0, 0), x)
    np.testing.assert_array_equal(mm.augment(mm.augment(x, True, 0, 0), True, 0, 0), x)
    down_right = mm.augment(x, False, 1, 1)
    np.testing.assert_array_equal(down_right[:, 1:, 1:], x[:, :-1, :-1])
    assert not down_right[:, 0].any() and not down_right[:, :, 0].any()     # zeros shifted in, nothing wraps
    np.testing.assert_array_equal(mm.augment(x, True, 0, -1)[:, :, :-1], x[:, :, ::-1][:, :, 1:])
