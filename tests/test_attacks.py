"""The attack suite (attacks/suite.py, attacks/gradient.py) and attacks.py: budgets,
[0, 1], strength orderings, determinism, the study's FGSM-k."""
import csv

import numpy as np
import pytest

from fashion_defenses.attacks import gradient as attacks
from fashion_defenses.framework import keras, tf
from fashion_defenses.models import predict_labels


def mean_loss(model, x, y):
    return float(np.mean(attacks.per_example_loss(model(x, training=False), y).numpy()))


def accuracy(model, x, y):
    return float(np.mean(predict_labels(model, x) == y))


def test_fgsm_within_eps_and_box_and_raises_loss(small_model, attack_set):
    x, y = attack_set
    x_adv = attacks.fgsm(small_model, x, y, eps=0.05)
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert mean_loss(small_model, x_adv, y) > mean_loss(small_model, x, y) + 0.1


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_pgd_stays_in_the_ball_and_box(small_model, attack_set, norm, eps):
    x, y = attack_set
    x_adv = attacks.pgd(small_model, x, y, eps=eps, norm=norm, steps=10, seed=3)
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert size.mean() > 0.5 * eps  # it actually moved


def test_pgd_is_at_least_as_strong_as_fgsm(small_model, attack_set):
    x, y = attack_set
    acc_fgsm = accuracy(small_model, attacks.fgsm(small_model, x, y, eps=0.1), y)
    acc_pgd = accuracy(small_model, attacks.pgd(small_model, x, y, eps=0.1, steps=20, step_size=0.01), y)
    assert acc_pgd <= acc_fgsm
    assert acc_pgd < accuracy(small_model, x, y)


def test_more_restarts_never_raise_accuracy(small_model, attack_set):
    x, y = attack_set
    correct = {}
    for restarts in (1, 3):
        x_adv = attacks.pgd(small_model, x, y, eps=0.03, steps=5, restarts=restarts, seed=7)
        correct[restarts] = predict_labels(small_model, x_adv) == y
    assert not np.any(correct[3] & ~correct[1])  # no image survives 3 restarts that fell to 1
    assert correct[3].mean() <= correct[1].mean()


def test_margin_loss_attack_is_as_strong_as_cross_entropy(small_model, attack_set):
    x, y = attack_set
    acc_margin = accuracy(small_model, attacks.pgd(small_model, x, y, eps=0.1, steps=10, loss="margin"), y)
    acc_ce = accuracy(small_model, attacks.pgd(small_model, x, y, eps=0.1, steps=10, loss="ce"), y)
    assert acc_margin <= acc_ce + 0.05
    assert acc_margin < accuracy(small_model, x, y) - 0.2


def test_attacks_are_deterministic_under_a_seed(small_model, attack_set):
    x, y = attack_set
    a = attacks.pgd(small_model, x[:50], y[:50], eps=0.05, steps=3, seed=11)
    b = attacks.pgd(small_model, x[:50], y[:50], eps=0.05, steps=3, seed=11)
    c = attacks.pgd(small_model, x[:50], y[:50], eps=0.05, steps=3, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)  # the random start depends on the seed


def test_batching_does_not_change_the_result(small_model, attack_set):
    """Each image is attacked on its own whatever the batch: a batch size can change the
    order of a float sum, and so the sign of a gradient component within rounding of 0,
    never more. On an AMD EPYC (15.5 s/epoch) no pixel differs (0 of 156,800); one in a
    thousand would mean the batches are not independent."""
    x, y = attack_set
    whole = attacks.pgd(small_model, x, y, eps=0.05, steps=3, random_start=False, batch_size=500)
    split = attacks.pgd(small_model, x, y, eps=0.05, steps=3, random_start=False, batch_size=64)
    differ = np.abs(whole - split) > 1e-6
    assert differ.mean() < 1e-3, differ.sum()
    assert np.abs(whole - x).max() <= 0.05 + 1e-6 and np.abs(split - x).max() <= 0.05 + 1e-6


def test_attacks_do_not_change_the_model(small_model, attack_set):
    x, y = attack_set
    before = [w.copy() for w in small_model.get_weights()]
    attacks.pgd(small_model, x[:20], y[:20], eps=0.1, steps=2)
    attacks.fgsm_k(small_model, x[:20], y[:20])
    for w0, w1 in zip(before, small_model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_eot_averages_gradients_of_a_random_model(attack_set):
    """A model whose input is multiplied by a random sign flips its gradient at random;
    EOT with many samples must average it towards zero, one sample must not."""
    class RandomSign(keras.layers.Layer):
        def call(self, x):
            sign = tf.where(tf.random.uniform([tf.shape(x)[0], 1, 1, 1]) < 0.5, -1.0, 1.0)
            return x * sign
    m = keras.Sequential([keras.Input((28, 28, 1)), RandomSign(), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
    x, y = attack_set
    x, y = tf.constant(x[:8]), tf.constant(y[:8])
    one = attacks._input_gradient(m, x, y, "ce", 1).numpy()
    many = attacks._input_gradient(m, x, y, "ce", 400).numpy()
    assert np.abs(many).mean() < 0.25 * np.abs(one).mean()


def threshold_model():
    """Class 0 if the mean pixel exceeds 0.48, else class 1, with logits 100*(mean - 0.48)
    and its negative (other classes far below): FGSM-k's stopping is predictable."""
    m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    w = np.zeros((784, 10), dtype=np.float32)
    w[:, 0], w[:, 1] = 100 / 784, -100 / 784
    b = np.full(10, -100.0, dtype=np.float32)
    b[0], b[1] = -48.0, 48.0
    m.layers[-1].set_weights([w, b])
    return m


def test_fgsm_k_stops_once_confidently_wrong():
    m = threshold_model()
    x = np.full((1, 28, 28, 1), 128 / 255, dtype=np.float32)
    y = np.array([0])
    # one step of 8/255 makes the mean 120/255: class 1 with confidence ~0.87 >= 0.8: stop
    np.testing.assert_allclose(attacks.fgsm_k(m, x, y), x - 8 / 255, atol=1e-6)
    # at 0.99 it needs a second step (confidence ~0.9997 at 112/255)
    np.testing.assert_allclose(attacks.fgsm_k(m, x, y, confidence=0.99), x - 16 / 255, atol=1e-6)
    # never satisfied: it walks to the 20/255 budget and stays there
    np.testing.assert_allclose(attacks.fgsm_k(m, x, y, confidence=1.1), x - 20 / 255, atol=1e-6)
    # already wrong and confident at the start: like the study, one step, then it stops
    x_low = np.full((1, 28, 28, 1), 100 / 255, dtype=np.float32)
    np.testing.assert_allclose(attacks.fgsm_k(m, x_low, y), x_low - 8 / 255, atol=1e-6)


def test_the_studys_loss_leaves_a_saturated_image_where_it_is():
    """The study's gradient is Keras' cross-entropy on clipped softmax probabilities:
    where the model is certain (p = 1 - 1e-7 or more) it is zero and FGSM-k never moves
    the image; the logit cross-entropy still has a gradient and moves it."""
    m = threshold_model()
    x = np.full((1, 28, 28, 1), 160 / 255, dtype=np.float32)   # logit gap ~29: p(class 0) rounds to 1
    y = np.array([0])
    np.testing.assert_allclose(attacks.fgsm_k(m, x, y, loss="study"), x, atol=1e-6)
    assert np.abs(attacks.fgsm_k(m, x, y, loss="ce") - x).max() == pytest.approx(20 / 255, abs=1e-6)
    # where the model is not saturated the two losses point the same way
    x_mid = np.full((1, 28, 28, 1), 128 / 255, dtype=np.float32)
    np.testing.assert_array_equal(attacks.fgsm_k(m, x_mid, y, loss="study"), attacks.fgsm_k(m, x_mid, y, loss="ce"))


def test_fgsm_k_is_on_the_pixel_grid_and_within_budget(small_model, attack_set):
    x, y = attack_set
    x_adv = attacks.fgsm_k(small_model, x, y)
    levels = x_adv * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    assert np.abs(x_adv - x).max() <= 20 / 255 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(small_model, x_adv, y) < accuracy(small_model, x, y)


def test_bad_attack_arguments():
    x, y = np.zeros((2, 28, 28, 1), np.float32), np.zeros(2)
    with pytest.raises(ValueError, match="eps"):
        attacks.pgd(None, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="norm"):
        attacks.pgd(None, x, y, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="0, 1"):
        attacks.fgsm(None, x + 2, y, eps=0.1)


def test_attacks_quick_end_to_end(quick_run):
    proc = quick_run.runs["attacks.py"]
    assert proc.returncode == 0, proc.stderr
    with open(quick_run.results / "attacks_standard.csv") as f:
        rows = {r["attack"] + "@" + r["eps"]: r for r in csv.DictReader(f)}
    assert float(rows["PGD-20@0.1"]["acc"]) <= float(rows["FGSM@0.1"]["acc"])
    assert float(rows["unbounded PGD-20@1.0"]["acc"]) <= 0.05
    assert (quick_run.results / "attacks_standard.png").exists()


def test_attacks_quick_end_to_end_in_the_paper_protocol(paper_quick_run):
    """The paper protocol's suite: the study's FGSM-k (its loss, 20/255) and the paper
    grid, each attack no stronger than the worst case at its budget."""
    proc = paper_quick_run.runs["attacks.py"]
    assert proc.returncode == 0, proc.stderr
    with open(paper_quick_run.results / "attacks_paper.csv") as f:
        rows = list(csv.DictReader(f))
    by = {(r["attack"], float(r["eps"])): r for r in rows}
    assert {r["protocol"] for r in rows} == {"paper"} and {r["n"] for r in rows} == {"50"}
    assert ("FGSM-k (study's loss)", 0.0784) in by and "cross-entropy on softmax probabilities" in \
        by[("FGSM-k (study's loss)", 0.0784)]["settings"]
    assert {e for a, e in by if a == "PGD-20"} == {0.05, 0.1, 0.2}          # the paper grid
    for (attack, eps), r in by.items():
        if eps in (0.05, 0.1, 0.2) and attack != "worst case":
            assert float(by[("worst case", eps)]["acc"]) <= float(r["acc"]), (attack, eps)

