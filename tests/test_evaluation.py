"""evaluation.py: the one evaluation function against direct calls, the sanity checks
on a gradient-masked model, the study's Table 4 writer, CLI and the quick run."""
import csv

import numpy as np
import pytest

from conftest import assert_one_line_error, run_script
import attacks
import evaluation as ev
import evaluation_report as report
import filters
from defenses import Defense
from data import attack_subset, STUDY_TABLE4
from model import keras, predict_labels, tf
from reporting import accuracy_ci, write_table

SETTINGS = ev.Settings(n_attack=100, eps_grid=(0.05, 0.1), long_attacks=((40, 1),), l2_radii=(0.5,), eot=2, n_vote=10)
SEED = 7


@pytest.fixture(scope="module")
def fixed_set(quick_data):
    return attack_subset(len(quick_data.y_test), SETTINGS.n_attack)


def transfer_from(model, data, idx):
    x, y = data.x_test[idx], data.y_test[idx]
    return {"fgsm_k": attacks.fgsm_k(model, x, y), "pgd": attacks.pgd(model, x, y, eps=0.1, steps=20, seed=SEED)}


def test_uniform_evaluation_equals_direct_calls(small_model, quick_data, fixed_set):
    data, idx = quick_data, fixed_set
    x, y = data.x_test[idx], data.y_test[idx]
    target = filters.target(small_model)
    rows = ev.evaluate(target, data, idx, transfer_from(small_model, data, idx), SETTINGS, SEED)
    predict = lambda x_: predict_labels(small_model, x_)  # noqa: E731
    expected = {
        ("clean", 0.0): accuracy_ci(predict(data.x_test) == data.y_test),
        ("FGSM", 0.1): accuracy_ci(predict(attacks.fgsm(small_model, x, y, eps=0.1, seed=SEED)) == y),
        ("PGD-20", 0.05): accuracy_ci(predict(attacks.pgd(small_model, x, y, eps=0.05, steps=20, seed=SEED)) == y),
        ("PGD-40", 0.1): accuracy_ci(predict(attacks.pgd(small_model, x, y, eps=0.1, steps=40, seed=SEED)) == y),
        ("L2 PGD-20", 0.5): accuracy_ci(predict(attacks.pgd(small_model, x, y, eps=0.5, norm="l2", steps=20,
                                                                 step_size=0.5 / 8, seed=SEED)) == y),
        ("FGSM-k adaptive", round(attacks.STUDY_EPS, 4)): accuracy_ci(predict(attacks.fgsm_k(small_model, x, y)) == y),
    }
    for (attack, eps), stats in expected.items():
        row = report.find(rows, attack, eps)
        assert row is not None, attack
        for key in ("n", "acc", "ci_low", "ci_high"):
            assert row[key] == pytest.approx(stats[key]), (attack, key)
    # the worst case at 0.1 is no better than any single attack at 0.1
    worst = report.find(rows, "worst case", 0.1)["acc"]
    assert all(worst <= r["acc"] for r in rows if r["eps"] == 0.1 and r["norm"] == "linf")


@keras.saving.register_keras_serializable(package="tests")
class MaskGradient(keras.layers.Layer):
    """Identity on the forward pass, zero gradient: a gradient-masked 'defense'."""

    def call(self, x):
        return tf.stop_gradient(x)


def test_sanity_checks_flag_a_gradient_masked_model(small_model, quick_data, fixed_set):
    data, idx = quick_data, fixed_set
    masked = keras.Sequential([keras.Input((28, 28, 1)), MaskGradient(), small_model])
    transfer = transfer_from(small_model, data, idx)
    results = {}
    for label, model in (("healthy", small_model), ("masked", masked)):
        rows = ev.evaluate(filters.target(model), data, idx, transfer, SETTINGS, SEED)
        results[label] = {check: passed for check, passed, _ in ev.sanity_checks(rows, SETTINGS)}
    assert results["healthy"]["adaptive no weaker than transfer"]
    assert results["healthy"]["unbounded attack reaches ~0%"]
    assert not results["masked"]["adaptive no weaker than transfer"]


def fake_row(attack, acc, eps=0.0, images="100 fixed", n=100, norm="linf"):
    return {"attack": attack, "norm": norm, "eps": round(eps, 4), "images": images, "n": n, "acc": acc,
            "ci_low": acc - 0.05, "ci_high": acc + 0.05}


def healthy_rows():
    return [fake_row("benign", 0.9), fake_row("FGSM-k transfer", 0.5, attacks.STUDY_EPS),
            fake_row("FGSM-k adaptive", 0.4, attacks.STUDY_EPS), fake_row("FGSM", 0.5, 0.1),
            fake_row("PGD-20 transfer", 0.5, 0.1), fake_row("PGD-20", 0.6, 0.05), fake_row("PGD-20", 0.3, 0.1),
            fake_row("PGD-40", 0.29, 0.1), fake_row("unbounded PGD-20", 0.0, 1.0)]


def test_sanity_checks_on_hand_made_rows():
    checks = {c: p for c, p, _ in ev.sanity_checks(healthy_rows(), SETTINGS)}
    assert all(checks.values()), checks
    broken = healthy_rows()
    broken[5] = fake_row("PGD-20", 0.2, 0.05)   # accuracy rises from eps 0.05 to 0.1 beyond noise
    broken[7] = fake_row("PGD-40", 0.1, 0.1)    # PGD-40 finds far more than PGD-20: not converged
    checks = {c: p for c, p, _ in ev.sanity_checks(broken, SETTINGS)}
    assert not checks["accuracy falls with eps"]
    assert not checks["more steps/restarts change little"]
    assert checks["unbounded attack reaches ~0%"]


def test_paper_table_puts_each_figure_in_its_cell(tmp_path):
    key = "median filter only"
    defense = Defense("dual filter (at prediction time)", "filter", "paper_cnn", train=None, filter="dual",
                      paper_row=key)
    rows = [fake_row("clean (train)", 0.70, images="first 5000 training", n=5000),
            fake_row("clean", 0.80, images="test set", n=10000),
            fake_row("benign", 0.75, images="study's 20", n=20), fake_row("FGSM-k transfer", 0.30, images="study's 20", n=20),
            fake_row("benign", 0.81, images="1000 fixed", n=1000),
            fake_row("FGSM-k transfer", 0.62, images="1000 fixed", n=1000),
            fake_row("FGSM-k adaptive", 0.55, images="1000 fixed", n=1000)]
    (tmp_path / "mia").mkdir()
    is_member = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    decision = np.r_[np.ones(6, bool), np.zeros(14, bool)]          # 16 of 20 right
    np.savez(tmp_path / "mia" / "paper_cnn+dual_study.npz", score=np.zeros(20), is_member=is_member,
             decision=decision)
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
    assert all(r["LiRA AUC"] for r in summary)   # membership inference results reached the summary
    assert "Standard protocol" in (results / "summary.md").read_text()


def test_the_digest_is_made_from_the_results_files(tmp_path):
    """README's findings, headline and compact Table 4 come from the stages' CSVs, each
    figure copied from the cell it stands for."""
    summary = [{"defense": d, "kind": "", "model": m, "clean (test set)": c, "FGSM-k transfer": t,
                "worst case @0.1": w, "certified @0.5": ""}
               for d, m, c, t, w in (("undefended CNN", "cnn", "92.2 [91.6, 92.7]", "1.4 [0.8, 2.3]", "0.0 [0.0, 0.4]"),
                                     ("dual filter", "cnn_dual", "90.3 [89.7, 90.9]", "67.2 [64.2, 70.1]",
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
    report.write_digest(tmp_path)
    findings = (tmp_path / "findings.md").read_text()
    assert "keeps 0.4% [0.1, 1.0]" in findings and "leaves 67.2% [64.2, 70.1]" in findings
    assert "1 of the 2 figures" in findings
    assert "PGD adversarial training" not in findings   # no such row: no sentence
    [compact] = list(csv.DictReader((tmp_path / "table4_compact.csv").open()))
    assert compact["test accuracy"] == "67.4 / 47.0 [42.5, 51.5]"
    assert compact["FGSM-k adaptive, 1000 fixed"] == "2.0 [0.2, 7.0]"
    headline = (tmp_path / "headline.md").read_text()
    assert "| dual filter | 90.3 [89.7, 90.9] | 0.4 [0.1, 1.0] | - |" in headline
    assert "## evaluation_paper_table4" in (tmp_path / "README.md").read_text()
