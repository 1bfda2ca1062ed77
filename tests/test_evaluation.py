"""The evaluation (evaluation/, evaluation.py): the one evaluation function against
direct calls, the sanity checks on a gradient-masked model, the study's Table 4
writer, the per-image files, CLI and the quick run."""
import csv
import importlib
import json
import shutil
import sys

import numpy as np
import pytest
from conftest import MaskGradient, assert_one_line_error, run_script

from fashion_defenses.attacks import autoattack, suite
from fashion_defenses.attacks import gradient as gradient_attacks
from fashion_defenses.data import STUDY_EPS, STUDY_TABLE4, attack_subset
from fashion_defenses.defenses import filters, smoothing
from fashion_defenses.defenses.catalogue import Defense
from fashion_defenses.defenses.recipes import Recipe
from fashion_defenses.evaluation import api, core, digest, report
from fashion_defenses.evaluation import checks as sanity
from fashion_defenses.evaluation import result as result_of
from fashion_defenses.evaluation import rows as rows_of
from fashion_defenses.experiments import evaluation as ev
from fashion_defenses.framework import keras, tf
from fashion_defenses.models import predict_labels
from fashion_defenses.privacy import report as mr
from fashion_defenses.reporting import accuracy_ci, write_table

SETTINGS = core.Settings(n_attack=100, n_attack_randomized=40, eps_grid=(0.05, 0.1), l2_radii=(0.5,), draws=2,
                         n_vote=10)
SEED = 7


@pytest.fixture(scope="module")
def fixed_set(quick_data):
    return attack_subset(len(quick_data.y_test), SETTINGS.n_attack)


def transfer_from(model, data, idx):
    x, y = data.x_test[idx], data.y_test[idx]
    return suite.transfer_examples(model, x, y, (0.1,), "FGSM-k", SEED)


@pytest.fixture(scope="module")
def healthy_rows(small_model, quick_data, fixed_set):
    return core.evaluate(filters.target(small_model), quick_data, fixed_set,
                         transfer_from(small_model, quick_data, fixed_set), SETTINGS, SEED).rows


def test_uniform_evaluation_equals_direct_calls(small_model, quick_data, fixed_set, healthy_rows):
    """Each row against the attack functions called directly with the settings written
    out here, not taken from the suite."""
    data, idx, rows = quick_data, fixed_set, healthy_rows
    x, y = data.x_test[idx], data.y_test[idx]
    predict = lambda x_: predict_labels(small_model, x_)  # noqa: E731
    expected = {
        ("clean", 0.0): accuracy_ci(predict(data.x_test) == data.y_test),
        ("FGSM", 0.1): accuracy_ci(predict(gradient_attacks.fgsm(small_model, x, y, eps=0.1)) == y),
        ("PGD-20", 0.05): accuracy_ci(predict(gradient_attacks.pgd(small_model, x, y, eps=0.05, steps=20,
                                                                   step_size=0.05 / 8, seed=SEED)) == y),
        ("L2 PGD-20", 0.5): accuracy_ci(predict(gradient_attacks.pgd(small_model, x, y, eps=0.5, norm="l2", steps=20,
                                                                     step_size=0.5 / 8, seed=SEED)) == y),
        ("FGSM-k", round(STUDY_EPS, 4)): accuracy_ci(predict(gradient_attacks.fgsm_k(small_model, x, y)) == y),
        ("APGD-CE", 0.1): accuracy_ci((predict(x) == y) & (predict(autoattack.apgd(small_model, x, y, eps=0.1,
                                                                                    seed=SEED)) == y)),
    }
    for (attack, eps), stats in expected.items():
        row = rows_of.find(rows, attack, eps)
        assert row is not None, attack
        for key in ("n", "acc", "ci_low", "ci_high"):
            assert row[key] == pytest.approx(stats[key]), (attack, key)
    worst = rows_of.find(rows, "worst case", 0.1)["acc"]
    assert all(worst <= r["acc"] for r in rows if r["eps"] <= 0.1 and r["images"] == "100 fixed")
    assert rows_of.find(rows, "AutoAttack", 0.1)["acc"] <= rows_of.find(rows, "APGD-CE", 0.1)["acc"]
    assert all(r["settings"] for r in rows if r["eps"] > 0)   # every attack row says how it ran


def checks_of(model, source, data, idx, target=None):
    """The checks of an evaluation of model, with transfer attacks crafted on source."""
    target = target or filters.target(model)
    rows = core.evaluate(target, data, idx, transfer_from(source, data, idx), SETTINGS, SEED).rows
    return {check: passed for check, passed, _ in sanity.sanity_checks(rows, SETTINGS, target.missing_adaptive_views())}


def test_the_checks_pass_a_healthy_model(healthy_rows):
    """Margins measured (2026-12-07, AMD EPYC, 100 images): unbounded PGD-20 0% (5 images
    from failing), PGD-20 at 0.05 and 0.1 62% and 44% (28), PGD-20 44% against FGSM 53%
    (19), against AutoAttack 42% (9), Square after the white-box attacks 42% against 42%
    (10); adaptive and transfer PGD-20 are one attack on one model here (equal by
    construction)."""
    checks = {c: p for c, p, _ in sanity.sanity_checks(healthy_rows, SETTINGS)}
    assert all(checks.values()), checks


def test_a_masked_gradient_fails_the_transfer_and_black_box_checks(small_model, quick_data, fixed_set):
    """Margins measured (2026-12-07, AMD EPYC, 100 images): PGD-20 adaptive 68% against
    transfer 44% (14 images above the transfer's interval; FGSM-k 9); white-box 67%,
    then Square 46% (12 images beyond the check's noise); unbounded 72% against 5%."""
    masked = keras.Sequential([keras.Input((28, 28, 1)), MaskGradient(), small_model])
    checks = checks_of(masked, small_model, quick_data, fixed_set)
    assert not checks["adaptive no weaker than transfer"]
    assert not checks["black-box no stronger than white-box"]
    assert not checks["unbounded attack reaches ~0%"]


def test_a_saturated_softmax_fails_the_convergence_check(small_model, quick_data, fixed_set):
    """Margin measured (2026-12-07, AMD EPYC, 100 images): PGD-20 68% against AutoAttack
    42%, 17 images beyond the check's noise (half PGD-20's interval)."""
    saturated = keras.Sequential([keras.Input((28, 28, 1)), small_model, keras.layers.Rescaling(1e4)])
    checks = checks_of(saturated, small_model, quick_data, fixed_set)
    assert not checks["PGD-20 converged (AutoAttack no stronger beyond noise)"]


def test_a_filter_without_bpda_fails_the_views_check(small_model, quick_data, fixed_set):
    bits = filters.with_filter(filters.make_filter("bits3"), small_model)
    own_gradient_only = suite.Target(lambda x, y: predict_labels(bits, x) == y, (("autodiff", bits, 1),), bits)
    assert not checks_of(bits, small_model, quick_data, fixed_set[:30], own_gradient_only)["adaptive views complete"]


def fake_row(attack, acc, eps=0.0, images="100 fixed", n=100, norm="linf"):
    return {"attack": attack, "norm": norm, "eps": round(eps, 4), "images": images, "n": n, "acc": acc,
            "ci_low": acc - 0.05, "ci_high": acc + 0.05}


def test_the_eps_check_on_hand_made_rows(healthy_rows):
    rows = [dict(r) for r in healthy_rows]
    low = rows_of.find(rows, "PGD-20", 0.05, "100 fixed")
    low.update(acc=0.0, ci_low=0.0, ci_high=0.01)   # accuracy now rises from eps 0.05 to 0.1 beyond noise
    checks = {c: p for c, p, _ in sanity.sanity_checks(rows, SETTINGS)}
    assert not checks["accuracy falls with eps"]


def test_paper_table_puts_each_figure_in_its_cell(tmp_path):
    key = "median filter only"
    defense = Defense("dual filter (at prediction time)", "filter", "paper_cnn", train=None, filter="dual",
                      paper_row=key)
    rows = [fake_row("clean (train)", 0.70, images="first 5000 training", n=5000),
            fake_row("clean", 0.80, images="test set", n=10000),
            fake_row("benign", 0.75, images="study's 20", n=20),
            fake_row("FGSM-k transfer", 0.30, images="study's 20", n=20),
            fake_row("benign", 0.81, images="1000 fixed", n=1000),
            fake_row("FGSM-k transfer", 0.62, images="1000 fixed", n=1000),
            fake_row("FGSM-k", 0.55, images="1000 fixed", n=1000)]
    is_member = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    decision = np.r_[np.ones(6, bool), np.zeros(14, bool)]          # 16 of 20 right
    mr.save_scores(mr.scores_path(tmp_path, "paper", "paper_cnn+dual", "study"), np.zeros(20), is_member, decision)
    mia_rows = {("paper_cnn+dual", "study"): {"f1": "0.75", "accuracy": "0.8"}}
    table = {r["measure"]: r for r in report.paper_table([(defense, rows)], mia_rows, tmp_path, SETTINGS)}
    study = STUDY_TABLE4[key]
    assert table["train accuracy"]["study"] == study["train_acc"] and table["train accuracy"]["ours"] == 70.0
    assert table["train accuracy"]["study_within_ci"] is True          # 70.56 in [65, 75]
    assert table["test accuracy"]["study"] == study["test_acc"] and table["test accuracy"]["ours"] == 80.0
    assert table["test accuracy"]["study_within_ci"] is False          # 67.41 outside [75, 85]
    cell = table["FGSM-k adversarial (transfer), study's 20"]
    assert (cell["study"], cell["ours"], cell["n"]) == (study["fgsmk_adv"], 30.0, 20)
    assert table["FGSM-k benign, study's 20"]["ours"] == 75.0
    assert table["FGSM-k adaptive, 1000 fixed"]["ours"] == 55.0 and table["FGSM-k adaptive, 1000 fixed"]["study"] == ""
    assert table["FGSM-k transfer, 1000 fixed"]["ours"] == 62.0
    assert table["MIA accuracy (study's rule)"]["ours"] == 80.0 and table["MIA accuracy (study's rule)"]["n"] == 20
    assert table["MIA F1 (study's rule)"]["ours"] == 0.75
    note = report.table4_note(list(table.values()))
    # in: train accuracy, benign on the 20; out: test accuracy, transfer on the 20, MIA accuracy
    assert note.startswith("Of the 5 figures") and "2 lie within" in note and "3 do not" in note
    assert "median filter only: test accuracy;" in note and "median filter only: train accuracy" not in note
    write_table(list(table.values()), tmp_path / "t4", note=note)
    assert (tmp_path / "t4.md").read_text().rstrip().endswith(note.strip())
    assert table["MIA F1 (study's rule)"]["study"] == study["mia_f1"]


def test_missing_models_give_one_line(tmp_path, quick_data):
    proc = run_script("evaluation.py", "--quick", "--results-dir", tmp_path / "r", "--models-dir", tmp_path / "m")
    assert_one_line_error(proc.returncode, proc.stderr)
    assert "--train-missing" in proc.stderr


def test_evaluation_quick_end_to_end(quick_run):
    proc, results = quick_run.runs["evaluation.py"], quick_run.results
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "saved" not in proc.stdout   # every model came from the stages before it
    for name in ("evaluation_standard.csv", "evaluation_standard_summary.md", "evaluation_standard_checks.csv",
                 "evaluation_standard_pareto.png", "evaluation_standard_eps.png", "evaluation_standard_privacy.png",
                 "evaluation_standard_run.json", "summary.md"):
        assert (results / name).exists(), name
    with open(results / "evaluation_standard_summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert [r["kind"] for r in summary] == ["undefended", "filter", "adversarial training", "randomized smoothing"]
    assert all(r["RMIA AUC"] for r in summary)   # membership inference results reached the summary
    assert "Standard protocol" in (results / "summary.md").read_text()


def test_every_robust_accuracy_can_be_recomputed_from_the_per_image_files(quick_run):
    """One .npz per defense: the mean of each attack's per-image flags is the table's
    accuracy, on the same images, for every row of the fixed set."""
    with open(quick_run.results / "evaluation_standard.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["images"].endswith("fixed")]
    files = sorted((quick_run.results / "per_image" / "evaluation_standard").glob("*.npz"))
    assert len(files) == len({r["model"] for r in rows}) == 4
    for path in files:
        images, robust = result_of.load_per_image(path)
        mine = [r for r in rows if r["model"].replace("+", "_") == path.stem]
        assert len(mine) == len(robust) and all(len(flags) == len(images) for flags in robust.values())
        for r in mine:
            flags = robust[(r["attack"], float(r["eps"]))]
            assert flags.mean() == pytest.approx(float(r["acc"])) and len(flags) == int(r["n"])
        assert (robust[("worst case", 0.1)] <= robust[("benign", 0.0)]).all()


def test_one_job_per_defense_then_the_report_gives_the_tables_of_one_run(quick_run, tmp_path):
    """The pipeline's split: evaluate_defense.py writes one defense's record (what one
    run wrote for it), and --report makes the tables from the records alone, as one run
    does."""
    results = tmp_path / "results"
    shutil.copytree(quick_run.results, results)
    records = results / "per_image" / "evaluation_standard"
    before = (records / "standard_cnn_at-pgd_eps0.1_ep1.json").read_text()
    (records / "standard_cnn_at-pgd_eps0.1_ep1.json").unlink()
    flags = ("--quick", "--results-dir", results, "--models-dir", quick_run.models)
    proc = run_script("evaluate_defense.py", *flags, "PGD AT")      # the outcome store has every attack
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((records / "standard_cnn_at-pgd_eps0.1_ep1.json").read_text())
    assert {k: v for k, v in after.items() if k != "seconds"} == \
        {k: v for k, v in json.loads(before).items() if k != "seconds"}
    for name in ("evaluation_standard.csv", "evaluation_standard_summary.csv"):
        (results / name).unlink()
    proc = run_script("evaluation.py", *flags, "--report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("evaluation_standard.csv", "evaluation_standard_summary.csv", "evaluation_standard_checks.csv"):
        assert (results / name).read_text() == (quick_run.results / name).read_text(), name


def test_a_smoothed_classifiers_clean_rows_as_a_job_of_their_own_give_the_same_record(quick_run, tmp_path):
    """dvc.yaml's evaluate-clean then evaluate-smoothed: the clean rows measured apart
    (--only-clean) and read back (--clean-rows) make the record the job makes in one
    go, every figure judged by PREDICT the same; clean rows of another defense, or
    measured on another model, are refused in one line."""
    results = tmp_path / "results"
    shutil.copytree(quick_run.results, results)
    flags = ("--quick", "--results-dir", results, "--models-dir", quick_run.models)
    proc = run_script("evaluate_defense.py", *flags, "smoothing sigma 0.25")
    assert proc.returncode == 0, proc.stderr[-3000:]
    [record] = [p for p in (results / "per_image" / "evaluation_standard").glob("standard_cnn_noise0.25*.json")]
    in_one_go = json.loads(record.read_text())
    record.unlink()
    proc = run_script("evaluate_defense.py", *flags, "--only-clean", "smoothing sigma 0.25")
    assert proc.returncode == 0, proc.stderr[-3000:]
    clean = record.with_suffix(".clean.json")
    assert not record.exists() and json.loads(clean.read_text())["rows"] == in_one_go["rows"][:2]
    assert "clean (test set)" in proc.stdout and "clean (train)" in proc.stdout
    proc = run_script("evaluate_defense.py", *flags, "--clean-rows", clean, "smoothing sigma 0.25")
    assert proc.returncode == 0, proc.stderr[-3000:]
    apart = json.loads(record.read_text())
    assert {k: v for k, v in apart.items() if k != "seconds"} == {k: v for k, v in in_one_go.items() if k != "seconds"}
    proc = run_script("evaluate_defense.py", *flags, "--clean-rows", clean, "PGD AT")
    assert_one_line_error(proc.returncode, proc.stderr)
    assert "not of 'PGD AT'" in proc.stderr
    saved = json.loads(clean.read_text())
    saved["measured_on"]["model"] = "another model"
    clean.write_text(json.dumps(saved))
    proc = run_script("evaluate_defense.py", *flags, "--clean-rows", clean, "smoothing sigma 0.25")
    assert_one_line_error(proc.returncode, proc.stderr)
    assert "measure them again" in proc.stderr


def test_the_studys_table4_row_from_a_paper_job_and_the_report(paper_quick_run):
    """The pipeline's paper protocol end to end: evaluate_defense.py evaluates the study's
    'median filter only' defense (its job), then evaluation.py --report sets our figures
    beside the study's Table 4 row, from that record and the membership scores."""
    for script in ("evaluate_defense.py", "evaluation.py"):
        assert paper_quick_run.runs[script].returncode == 0, paper_quick_run.runs[script].stderr[-3000:]
    results = paper_quick_run.results
    rows = json.loads((results / "per_image" / "evaluation_paper" / "paper_cnn_dual.json").read_text())["rows"]
    with open(results / "evaluation_paper_table4.csv", newline="") as f:
        table = {r["measure"]: r for r in csv.DictReader(f)}
    assert {r["configuration"] for r in table.values()} == {"median filter only"}
    study, fixed = STUDY_TABLE4["median filter only"], rows_of.fixed_images(rows)
    assert fixed == "50 fixed"
    for measure, attack, images, column in (("test accuracy", "clean", None, "test_acc"),
                                            ("FGSM-k adversarial (transfer), study's 20",
                                             "FGSM-k (study's loss) transfer", "study's 20", "fgsmk_adv"),
                                            ("FGSM-k adaptive, 50 fixed", "FGSM-k (study's loss)", fixed, None)):
        ours, cell = rows_of.find(rows, attack, images=images), table[measure]
        assert (float(cell["ours"]), int(cell["n"])) == (round(100 * ours["acc"], 2), ours["n"]), measure
        assert (cell["study"] == "") if column is None else float(cell["study"]) == study[column], measure
    assert table["FGSM-k adversarial (transfer), study's 20"]["n"] == "20"
    mia = table["MIA accuracy (study's rule)"]
    assert mia["ours"] != "" and float(mia["study"]) == study["mia_acc"]
    assert float(mia["ci_low"]) <= float(mia["ours"]) <= float(mia["ci_high"])
    # the note under the table: how many of the study's 5 figures with an interval of ours lie in it
    assert "Of the 5 figures" in (results / "evaluation_paper_table4.md").read_text()


def test_the_digest_is_made_from_the_results_files(tmp_path):
    """README's findings, headline and compact Table 4 come from the stages' CSVs, each
    figure copied from the cell it stands for."""
    summary = [{"defense": d, "kind": "", "model": m, "clean (test set)": c, "FGSM-k transfer": t,
                "worst case @0.1": w, "certified @0.5": ""}
               for d, m, c, t, w in (("undefended CNN", "standard_cnn", "92.2 [91.6, 92.7]", "1.4 [0.8, 2.3]",
                                      "0.0 [0.0, 0.4]"),
                                     ("dual filter", "standard_cnn_dual", "90.3 [89.7, 90.9]", "67.2 [64.2, 70.1]",
                                      "0.4 [0.1, 1.0]"))]
    write_table(summary, tmp_path / "evaluation_standard_summary")
    cells = [{"configuration": "median filter only", "model": "cnn+dual", "measure": measure, "study": study,
              "n": 20, "ours": ours, "ci_low": low, "ci_high": high, "study_within_ci": within}
             for measure, study, ours, low, high, within in (
                 ("test accuracy", 67.41, 47.0, 42.55, 51.48, False),
                 ("FGSM-k adversarial (transfer), study's 20", 60.0, 30.0, 11.89, 54.28, True),
                 ("FGSM-k transfer, 1000 fixed", "", 26.0, 17.74, 35.73, ""),
                 ("FGSM-k adaptive, 1000 fixed", "", 2.0, 0.24, 7.04, ""))]
    write_table(cells, tmp_path / "evaluation_paper_table4")
    digest.write_digest(tmp_path)
    findings = (tmp_path / "findings.md").read_text()
    assert "does not defend" in findings   # its interval overlaps the undefended CNN's
    assert "keeps 0.4% [0.1, 1.0]" in findings and "against 67.2% [64.2, 70.1]" in findings
    assert "1 of the 2 figures" in findings
    assert "not the training, and training one of the study's recipes again" in findings   # one training each
    assert "PGD adversarial training" not in findings   # no such row: no sentence
    [compact] = list(csv.DictReader((tmp_path / "table4_compact.csv").open()))
    assert compact["test accuracy"] == "67.4 / 47.0 [42.5, 51.5]"
    assert compact["FGSM-k adaptive, 1000 fixed"] == "2.0 [0.2, 7.0]"
    headline = (tmp_path / "headline.md").read_text()
    assert "| dual filter | 90.3 [89.7, 90.9] | - | - | 0.4 [0.1, 1.0] | - |" in headline
    assert "## evaluation_paper_table4" in (tmp_path / "README.md").read_text()


def test_the_findings_judge_only_what_the_numbers_show(tmp_path):
    """A filter that beats the undefended CNN, a defense stronger than PGD AT and a
    PGD-20 no stronger than AutoAttack each turn the sentence's verdict around; two
    defenses no further apart than one retraining moved PGD AT are not ranked."""
    def row(model, worst, **cells):
        return {"defense": model, "model": model, "clean (test set)": "90.0 [89.4, 90.6]", "FGSM-k transfer": "",
                "worst case @0.1": worst, "PGD-20 @0.1": "", "AutoAttack @0.1": "", "certified @0.5": "", **cells}
    pgd = Recipe("pgd").name("standard_cnn")
    write_table([row("standard_cnn", "0.0 [0.0, 0.4]"), row("standard_cnn_dual", "30.0 [27.2, 32.9]"),
                 row(pgd, "40.0 [37.0, 43.1]", **{"PGD-20 @0.1": "40.0 [37.0, 43.1]",
                                                  "AutoAttack @0.1": "40.0 [37.0, 43.1]"}),
                 row("other", "50.0 [46.9, 53.1]")], tmp_path / "evaluation_standard_summary")
    findings = digest.findings(tmp_path)
    assert "does not defend" not in findings and "keeps more than the undefended CNN" in findings
    assert "the most of every defense" not in findings and "other keeps the most, 50.0%" in findings
    assert "PGD-20 alone does not overstate it" in findings
    assert "training-run variation" not in findings                  # 10 points apart: a ranking
    write_table([row(pgd, "40.0 [37.0, 43.1]"), row("other", "41.5 [38.4, 44.6]"),
                 row(Recipe("fgsm").name("standard_cnn"), "20.0 [17.6, 22.6]"),
                 row(Recipe("fgsm-rs").name("standard_cnn"), "30.0 [27.2, 32.9]")],
                tmp_path / "evaluation_standard_summary")
    findings = digest.findings(tmp_path)   # 1.5 points apart: no ranking; FGSM's 10: one
    assert "other keeps the most, 41.5% [38.4, 44.6], as much as PGD AT within training-run variation" in findings
    assert "FGSM training keeps 20.0% [17.6, 22.6] without a random start and 30.0% [27.2, 32.9] with one; " \
        "one training each: the run at 02eeec4" in findings
    write_table([row(pgd, "40.0 [37.0, 43.1]"), row("other", "38.0 [35.0, 41.1]")],
                tmp_path / "evaluation_standard_summary")
    assert "the most of every defense" not in digest.findings(tmp_path)
    assert "as much as other (38.0% [35.0, 41.1]) within training-run variation" in digest.findings(tmp_path)


def test_bad_model_files_give_one_line(main_in_process, tmp_path):
    (tmp_path / "notes.keras").write_text("not a model")
    wrong = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    wrong.save(tmp_path / "cifar.keras")
    for path, message in ((tmp_path / "missing.keras", "no such file"), (tmp_path / "notes.keras", "Keras can load"),
                          (tmp_path / "cifar.keras", "28x28x1")):
        code, err = main_in_process("evaluation", "--quick", "--model", path)
        assert_one_line_error(code, err)
        assert message in err
    code, err = main_in_process("evaluation", "--quick", "--sigma", "0.25")
    assert_one_line_error(code, err)
    code, err = main_in_process("evaluation", "--quick", "--defenses", "no such defense")
    assert_one_line_error(code, err)


def test_an_evaluation_job_refuses_an_unknown_defense_or_a_missing_model_in_one_line(main_in_process):
    code, err = main_in_process("evaluate_defense", "--quick", "no such defense")
    assert_one_line_error(code, err)
    assert "unknown 'no such defense'" in err and "PGD AT" in err     # the protocol's defenses listed
    code, err = main_in_process("evaluate_defense", "--quick", "PGD AT")    # an empty models folder
    assert_one_line_error(code, err)
    assert "no model of PGD AT" in err and "train.py" in err


def test_a_missing_model_file_is_refused_before_tensorflow_loads():
    probe = ("import runpy, sys\nsys.argv = ['evaluation.py', '--model', 'no/such.keras']\ntry:\n"
             "    runpy.run_path('evaluation.py', run_name='__main__')\nexcept SystemExit as e:\n"
             "    print(e.code, 'tensorflow' in sys.modules)")
    proc = run_script("-c", probe)
    assert proc.stdout.split() == ["2", "False"] and "no such file" in proc.stderr


def test_a_users_probability_model_is_evaluated_as_logits(small_model, tmp_path, monkeypatch):
    """A model file that ends in a softmax: evaluated through its log, with no cached
    undefended CNN to transfer from."""
    path = tmp_path / "mine.keras"
    keras.Sequential([keras.Input((28, 28, 1)), small_model, keras.layers.Softmax()]).save(path)
    model, outputs = ev.load_user_model(path)
    assert outputs == "probabilities"
    x = np.random.default_rng(1).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(tf.nn.softmax(model(x)), tf.nn.softmax(small_model(x)), atol=1e-5)
    monkeypatch.setattr(sys, "argv", ["evaluation.py", "--quick", "--model", str(path), "--results-dir",
                                      str(tmp_path / "r"), "--models-dir", str(tmp_path / "m")])
    importlib.import_module("evaluation").main()   # the script
    with open(tmp_path / "r" / "your_models" / "evaluation_mine.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["defense"] == "mine.keras (probabilities)"
    images, robust = result_of.load_per_image(tmp_path / "r" / "your_models" / "evaluation_mine_per_image.npz")
    assert len(images) == 50 and ("AutoAttack", 0.1) in robust
    assert {"AutoAttack", "worst case"} <= {r["attack"] for r in rows}
    with open(tmp_path / "r" / "your_models" / "evaluation_mine_leaderboard.csv", newline="") as f:
        board = list(csv.DictReader(f))   # no published records in this results folder: its own row alone
    assert [r["defense"] for r in board] == ["mine.keras (probabilities)"] and board[0]["kind"] == "your model"
    assert (tmp_path / "r" / "your_models" / "evaluation_mine_pareto.png").stat().st_size > 5000


def test_a_users_model_is_placed_among_the_published_defenses(quick_run):
    """Its summary row among those of every defense with a record in the results, the
    most robust first (worst case at L-inf 0.1)."""
    records = quick_run.results / "per_image" / "evaluation_standard"
    pgd = json.loads((records / "standard_cnn_at-pgd_eps0.1_ep1.json").read_text())
    mine = result_of.EvaluationResult("mine", 0.1, "autodiff", "its prediction",
                                tuple(result_of.Measurement.from_row(r) for r in pgd["rows"]), (), np.arange(0), {})
    board = api.leaderboard(mine, quick_run.results)
    # the full run's names: the quick run's PGD AT (1 epoch) is not the published PGD AT
    assert sorted(r["defense"] for r in board) == ["dual filter", "mine", "smoothing sigma 0.25", "undefended CNN"]
    worst = [float(r["worst case @0.1"].split()[0]) for r in board]
    assert worst == sorted(worst, reverse=True)
    mine_row = next(r for r in board if r["defense"] == "mine")
    assert mine_row["kind"] == "your model" and mine_row["worst case @0.1"] == \
        report.pct(rows_of.find(pgd["rows"], "worst case", 0.1, rows_of.fixed_images(pgd["rows"])))


def test_a_smoothed_classifier_is_judged_by_predict_on_the_randomized_subset(small_model, quick_data, fixed_set):
    target = smoothing.smoothed_target(small_model, 0.25, n_vote=10, draws=2, seed=SEED)
    rows = core.evaluate(target, quick_data, fixed_set, transfer_from(small_model, quick_data, fixed_set), SETTINGS,
                         SEED).rows
    fixed = rows_of.fixed_images(rows)
    assert fixed == "40 fixed"
    assert {r["n"] for r in rows if r["images"] == fixed} == {40}
    rand = rows_of.autoattack_row(rows, fixed)
    assert rand["attack"] == "AutoAttack (rand version), judged by PREDICT (n 10, alpha 0.001; abstention wrong)"
    soft = rows_of.find(rows, "soft-smoothed APGD", 0.1, fixed)
    assert rand["settings"].startswith("APGD-CE (rand version) through noisy base classifier, EOT-2")
    assert "soft smoothed classifier" in soft["settings"]
    assert rows_of.find(rows, "AutoAttack", 0.1, fixed) is None      # no standard version on a randomized defense
    worst = rows_of.find(rows, "worst case", 0.1, fixed)
    assert worst["acc"] <= min(rand["acc"], soft["acc"])
    # PREDICT abstains where 10 noisy votes are split: clean accuracy below the vote's
    votes = predict_labels(small_model, quick_data.x_test) == quick_data.y_test
    assert rows_of.find(rows, "clean")["acc"] < votes.mean()


def test_the_checks_read_as_failing_lines_only():
    every_pass = {check: "pass (ok)" for check in sanity.CHECK_MEANINGS}
    rows = [{"defense": "a", **every_pass}, {"defense": "b", **every_pass}]
    text = sanity.checks_markdown(rows)
    assert text.startswith("Every check passes for all 2 defenses") and "\n" not in text
    rows[1]["PGD no weaker than FGSM"] = "FAIL (PGD-20 9.0% vs FGSM 5.0%)"
    text = sanity.checks_markdown(rows)
    assert "- **b**: PGD no weaker than FGSM fails (PGD-20 9.0% vs FGSM 5.0%)" in text
    assert sanity.CHECK_MEANINGS["PGD no weaker than FGSM"] in text and "**a**" not in text


def test_the_leakage_findings_follow_the_verdicts_over_targets(tmp_path):
    """A defense whose difference lies above 0 on every target leaks more, one below 0
    on every target less, one whose interval holds 0 on a target neither, by each metric
    apart: the same numbers turn the TPR sentence and the AUC sentence differently;
    adversarial queries get Song et al.'s sentence."""
    mia_row = {"defense": "pgd AT", "model": "m", "attack": "rmia", "auc": "0.52", "tpr_at_1%_fpr": "0.02",
               "tp_at_1%_fpr": "40", "n_members": "2000", "targets": "3"}
    write_table([mia_row], tmp_path / "membership_inference_standard")

    def verdicts(*rows, queries="clean"):   # rows: defense, attack, target, AUC's and TPR's (d, low, high)
        return mr.verdict_table([{"defense": d, "model": d, "attack": a, "target": t, "queries": queries,
                                  "nonmembers": 2000, **dict(zip(("d_auc", "d_auc_low", "d_auc_high"), auc)),
                                  **dict(zip(("d_tpr", "d_tpr_low", "d_tpr_high"), tpr))}
                                 for d, a, t, auc, tpr in rows])
    every = lambda d, a, auc, tpr: [(d, a, t, auc, tpr) for t in range(3)]  # noqa: E731
    up, down, zero = (0.03, 0.01, 0.05), (-0.03, -0.05, -0.01), (0.0, -0.02, 0.02)
    clean = verdicts(*every("pgd AT", "rmia", up, up), *every("dual filter", "rmia", down, zero),
                     *every("trades AT", "rmia", down, down)[:2], ("trades AT", "rmia", 2, zero, down),
                     *every("pgd AT", "loss", (0.2, 0.1, 0.3), up))
    write_table(clean, tmp_path / "membership_inference_standard_verdict")
    adversarial = verdicts(*every("pgd AT", "loss", zero, zero), queries="PGD-10")
    write_table(adversarial, tmp_path / "membership_inference_standard_adversarial_queries_verdict")
    first, clean, adversarial = digest.leakage_findings(tmp_path)
    assert "3 per recipe" in first
    assert ("by TPR at 1% FPR, more for pgd AT (+3.00 pp on average; also the loss attack); less for trades AT "
            "(-3.00 pp on average); by AUC, more for pgd AT (+0.030 on average; also the loss attack); less for "
            "dual filter (-0.030 on average)") in clean
    assert "Song et al." in adversarial and \
        "(PGD-10, the loss attack): by TPR at 1% FPR, no defense leaks more" in adversarial
