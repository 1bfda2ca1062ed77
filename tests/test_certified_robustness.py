"""Randomized smoothing (defenses/certificates.py, smoothing.py) and its stage:
Cohen et al.'s statistics against scipy, abstention, the radius cap, resumable logs,
bad input and an end-to-end run."""
import csv
import shutil

import numpy as np
import pytest
from conftest import assert_one_line_error, run_script
from scipy.stats import binomtest, norm

from fashion_defenses.data import PROTOCOLS
from fashion_defenses.defenses import certificates, smoothing
from fashion_defenses.errors import UserError
from fashion_defenses.experiments import certify
from fashion_defenses.framework import keras, tf
from fashion_defenses.models import base_classifier, load_model, save_model
from fashion_defenses.reporting import accuracy_ci


@pytest.mark.parametrize("n_a, n", [(990, 1000), (600, 1000), (99_990, 100_000), (51, 100)])
def test_radius_is_sigma_times_phi_inverse_of_the_clopper_pearson_bound(n_a, n):
    alpha, sigma = 0.001, 0.25
    independent = binomtest(n_a, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    p_lower, radius = certificates.certified_radius(n_a, n, alpha, sigma)
    assert p_lower == pytest.approx(independent, rel=1e-9)
    if independent >= 0.5:
        assert radius == pytest.approx(sigma * norm.ppf(independent), rel=1e-9)
    else:
        assert radius is None  # abstain


def test_below_one_half_abstains():
    p_lower, radius = certificates.certified_radius(520, 1000, 0.001, 0.5)
    assert p_lower < 0.5 and radius is None


def test_no_radius_exceeds_the_cap():
    for n in (100, 1000, 100_000):
        cap = certificates.max_certifiable_radius(n, 0.001, 0.5)
        assert cap == pytest.approx(0.5 * norm.ppf(0.001 ** (1 / n)))
        radii = [certificates.certified_radius(k, n, 0.001, 0.5)[1] or 0.0 for k in range(0, n + 1, max(1, n // 200))]
        assert max(radii) <= cap + 1e-9
    assert certificates.max_certifiable_radius(100_000, 0.001, 1.0) == pytest.approx(3.81, abs=0.005)  # docs/study.md


class ConstantLogits(keras.layers.Layer):
    """A base model that ignores its input: fixed logits, or a random coin between two
    classes per input (a base model that outputs two classes equally often)."""

    def __init__(self, mode, label=0, **kwargs):
        super().__init__(**kwargs)
        self.mode, self.label = mode, label

    def call(self, x):
        n = tf.shape(x)[0]
        if self.mode == "coin":
            cls = tf.cast(tf.random.uniform([n]) < 0.5, tf.int32)
        else:
            cls = tf.fill([n], self.label)
        return tf.one_hot(cls, 10) * 10.0


def constant_model(mode, label=0):
    return keras.Sequential([keras.Input((28, 28, 1)), ConstantLogits(mode, label)])


def test_predict_abstains_on_a_coin_flip_base_model():
    smooth = smoothing.Smooth(constant_model("coin"), sigma=0.25)
    x = np.zeros((28, 28, 1), np.float32)
    assert smooth.predict(x, n=1000, alpha=0.001) == certificates.ABSTAIN


def test_an_always_right_base_model_certifies_at_the_cap(tmp_path):
    x = np.zeros((5, 28, 28, 1), np.float32)
    y = np.full(5, 7)
    smooth = smoothing.Smooth(constant_model("fixed", label=7), sigma=0.5)
    rows = smoothing.certify_images(smooth, x, y, range(5), tmp_path / "log.tsv", n0=100, n=1000, alpha=0.001,
                             seed=0, progress=False)
    cap = certificates.max_certifiable_radius(1000, 0.001, 0.5)
    assert [int(r["predict"]) for r in rows] == [7] * 5
    assert all(float(r["radius"]) == pytest.approx(cap, abs=1e-4) for r in rows)
    assert all(int(r["nA"]) == 1000 for r in rows)


def test_counts_are_deterministic_and_sum_to_n(small_model, attack_set):
    smooth = smoothing.Smooth(small_model, sigma=0.25, batch_size=300)
    a, b = smooth.counts(attack_set[0][0], 1000, seed=3), smooth.counts(attack_set[0][0], 1000, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.sum() == 1000


def test_killed_run_resumes_to_the_same_log(tmp_path, small_model, attack_set):
    x, y = attack_set
    smooth = smoothing.Smooth(small_model, sigma=0.25)
    full = smoothing.certify_images(smooth, x, y, range(8), tmp_path / "full.tsv", 10, 200, 0.001, seed=5,
                                    progress=False)
    smoothing.certify_images(smooth, x, y, range(4), tmp_path / "part.tsv", 10, 200, 0.001, seed=5, progress=False)
    with open(tmp_path / "part.tsv", "a") as f:
        f.write("4\t3\t1\t0.12")  # a row torn by the kill
    resumed = smoothing.certify_images(smooth, x, y, range(8), tmp_path / "part.tsv", 10, 200, 0.001, seed=5,
                                progress=False)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in resumed]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in full]
    assert [int(r["idx"]) for r in resumed] == list(range(8))  # no duplicate, none lost


def test_shards_merge_into_one_log(tmp_path, small_model, attack_set):
    x, y = attack_set
    smooth = smoothing.Smooth(small_model, sigma=0.25)
    indices = np.arange(10)
    path = tmp_path / "m.tsv"
    for i in (1, 2, 3):
        smoothing.certify_images(smooth, x, y, certificates.shard_range(indices, (i, 3)),
                                 tmp_path / f"m.shard{i}of3.tsv", 10, 100, 0.001, seed=1, progress=False)
    assert certificates.merge_shards(path) == 10
    assert [int(r["idx"]) for r in certificates.read_log(path)] == list(range(10))


def test_a_noise_trained_model_saves_and_loads_and_is_deterministic_at_test_time(tmp_path, attack_set):
    x = attack_set[0][:8]
    model = smoothing.build_noise_model(PROTOCOLS["standard"], 0.25)
    save_model(model, tmp_path, "noisy", {})
    loaded, _ = load_model(tmp_path, "noisy")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)
    assert base_classifier(loaded).name == "standard_cnn"   # what the smoothed classifier wraps


def test_bad_parameters():
    with pytest.raises(UserError, match="sigma"):
        smoothing.Smooth(None, sigma=0)
    smooth = smoothing.Smooth(None, sigma=0.5)
    with pytest.raises(UserError, match="n0"):
        smooth.certify(np.zeros((28, 28, 1)), n0=1000, n=100, alpha=0.001)
    with pytest.raises(UserError, match="alpha"):
        smooth.certify(np.zeros((28, 28, 1)), n0=10, n=100, alpha=1.5)


@pytest.mark.parametrize("argv", [["--sigmas", "0"], ["--sigmas", "-0.5"], ["--n0", "500", "--samples", "100"],
                                  ["--alpha", "1.5"], ["--alpha", "0"], ["--merge", "--retrain"],
                                  ["--quick", "--merge"],          # no shard certified yet: nothing written
                                  ["--protocol", "paper"]])
def test_bad_arguments_end_with_one_line(argv, main_in_process):
    assert_one_line_error(*main_in_process("certified_robustness", *argv))


@pytest.mark.parametrize("argv", [[], ["--sigma", "0"], ["--sigma", "0.25", "--shard", "5/4"],
                                  ["--sigma", "0.25", "--shard", "two"],
                                  ["--sigma", "0.25", "--predict-n", "--empirical"],
                                  ["--sigma", "0.25", "--protocol", "paper"], ["--sigma", "0.25", "--alpha", "2"]])
def test_bad_job_arguments_end_with_one_line(argv, main_in_process):
    assert_one_line_error(*main_in_process("certify", *argv))


def test_certified_robustness_quick_end_to_end(quick_run):
    proc = quick_run.runs["certified_robustness.py"]
    assert proc.returncode == 0, proc.stderr
    with open(quick_run.results / "certified_robustness.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["radius"]) for r in rows] == list(certificates.RADII)
    accs = [float(r["acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True)  # certified accuracy never rises with the radius
    with open(quick_run.results / "certified_robustness_empirical.csv") as f:
        empirical = [r for r in csv.DictReader(f) if r["model"].startswith("smoothed")]
    checked = [r["violation"] for r in empirical if r["violation"] != ""]
    assert checked and set(checked) == {"False"}
    assert (quick_run.results / "certified_accuracy.png").exists()
    assert len(list((quick_run.results / "certify").glob("*.tsv"))) == 1
    with open(quick_run.results / "certified_robustness_predict_n.csv") as f:
        predict_n = list(csv.DictReader(f))
    assert sorted({int(r["draws"]) for r in predict_n}) == list(certify.PREDICT_NS["quick"])
    assert {int(r["n"]) for r in predict_n} == {10}        # the images certified


def test_the_jobs_then_merge_give_the_tables_of_one_run(quick_run, tmp_path):
    """The pipeline's split: certify.py's shards, PREDICT-n and empirical files, then
    certified_robustness.py --merge, make the tables one run makes (but the seconds)."""
    results = tmp_path / "results"
    shutil.copytree(quick_run.results, results)
    for path in [*results.glob("certified_robustness*"), *(results / "certify").glob("*.*")]:
        path.unlink()
    flags = ("--quick", "--results-dir", results, "--models-dir", quick_run.models, "--images", "10")
    for job in (("--shard", "1/2"), ("--shard", "2/2"), ("--predict-n",), ("--empirical",)):
        proc = run_script("certify.py", *flags, "--sigma", "0.25", *job)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (results / "certified_robustness.csv").exists()
    assert len(list((results / "certify" / "shards").glob("*.shard?of2.tsv"))) == 2
    proc = run_script("certified_robustness.py", *flags, "--sigmas", "0.25", "--merge")
    assert proc.returncode == 0, proc.stderr[-3000:]
    joined = certificates.largest_certify_log(results, "standard_cnn_noise0.25", 0.25)     # what the evaluation reads
    assert joined.parent == results / "certify" and len(certificates.read_log(joined)) == 10
    for name in ("certified_robustness_empirical.csv", "certified_robustness_predict_n.csv",
                 "certified_robustness_predict_n.md"):
        assert (results / name).read_text() == (quick_run.results / name).read_text(), name
    mine, theirs = ([{k: v for k, v in r.items() if k != "mean_seconds_per_image"}   # the rest equal to the digit
                     for r in csv.DictReader(open(folder / "certified_robustness.csv", newline=""))]
                    for folder in (results, quick_run.results))
    assert mine == theirs and len(mine) == len(certificates.RADII)
    (results / "certify" / "predict_n_sigma0.25.json").unlink()
    proc = run_script("certified_robustness.py", *flags, "--sigmas", "0.25", "--merge")
    assert_one_line_error(proc.returncode, proc.stderr)
    assert "certify.py --sigma 0.25 --predict-n" in proc.stderr


def test_the_certificate_check_flags_only_a_significant_shortfall():
    """Certified at radius 0.5 on 8 of 10 images: an attack that leaves 1 of 500 there
    breaks the certificate; one that leaves 78% does not (PREDICT abstains more);
    radius 0 and radii beyond what n certifies are not checked."""
    logs = [{"radius": 0.9 if i < 8 else 0.0, "correct": int(i < 8)} for i in range(10)]
    broken = {"radius": 0.5, **accuracy_ci(np.arange(500) < 1)}
    fine = {"radius": 0.5, **accuracy_ci(np.arange(500) < 390)}
    assert certificates.certificate_check(broken, logs, cap=0.95) == (0.8, True)
    assert certificates.certificate_check(fine, logs, cap=0.95) == (0.8, False)
    assert certificates.certificate_check({**broken, "radius": 0.0}, logs, cap=0.95) == ("", "")
    assert certificates.certificate_check({**broken, "radius": 1.0}, logs, cap=0.95) == ("", "")


def test_predicts_n_is_the_smallest_whose_figures_stay_put():
    """The figures of this run's sigma 0.25 measurement (clean, PGD-20) at n = 100, 1,000
    and 10,000: tenfold more draws move n = 100's by 2.2 and 3.4 points (its abstentions),
    n = 1,000's by 0.4 and 0.6; half the 500-image interval (2.7, 4.4 points) would
    accept n = 100."""
    figures = {100: (0.884, 0.354), 1000: (0.906, 0.388), 10000: (0.910, 0.394)}
    rows = [{"draws": n, "measure": m, **accuracy_ci(np.arange(500) < round(500 * acc))}
            for n, accs in figures.items() for m, acc in zip(("clean", "PGD-20"), accs)]
    assert certificates.smallest_stable_n(rows, certificates.PREDICT_SHIFT) == 1000 == certificates.PREDICT_N
    assert certificates.smallest_stable_n(rows) == 100
    assert certificates.smallest_stable_n(rows, 0.001) == 10000       # none stable: the largest measured
