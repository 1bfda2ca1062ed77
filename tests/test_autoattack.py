"""autoattack.py and the suite in attacks.py: APGD's schedule, DLR, no weaker than IBM
ART's APGD and Square on the same model and images, the targets they are built for
(a saturated softmax, a masked gradient), and the checks of a defense's views."""
import math

import numpy as np
import pytest

import attacks
import autoattack
import certified_robustness as cr
import filters
import gradient_attacks
from model import keras, predict_labels, tf
from reporting import accuracy_ci


def robust(model, x_adv, y):
    return accuracy_ci(predict_labels(model, x_adv) == y)


def test_apgd_checkpoints_follow_the_paper():
    """p0 = 0, p1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); checkpoint ceil(p_j * N)."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    expected = [math.ceil(round(100 * q, 6)) for q in p[1:]]
    assert [at for at, _ in autoattack.apgd_checkpoints(100)] == expected == [22, 41, 57, 70, 80, 87, 93, 99]


def test_dlr_loss_ignores_the_scale_and_shift_of_the_logits():
    logits = tf.constant(np.random.default_rng(0).normal(size=(50, 10)), tf.float32)
    y = tf.constant(np.arange(50) % 10)
    target = tf.constant((np.arange(50) + 3) % 10)
    for loss in ("dlr", "dlr_targeted"):
        a = gradient_attacks.per_example_loss(logits, y, loss, target).numpy()
        b = gradient_attacks.per_example_loss(7.0 * logits + 3.0, y, loss, target).numpy()
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_square_schedule_halves_at_the_rescaled_points():
    assert autoattack.square_fraction(0, 5000, 0.8) == 0.8
    assert autoattack.square_fraction(6, 5000, 0.8) == 0.4          # 6 of 5000 = 12 of 10,000 queries
    assert autoattack.square_fraction(4999, 5000, 0.8) == pytest.approx(0.8 / 512)
    fractions = [autoattack.square_fraction(q, 5000, 0.8) for q in range(5000)]
    assert all(a >= b for a, b in zip(fractions, fractions[1:]))


@pytest.mark.parametrize("attack", ["apgd", "apgd_t", "square"])
def test_stays_in_the_ball_and_the_box(small_model, attack_set, attack):
    x, y = attack_set[0][:50], attack_set[1][:50]
    run = {"apgd": lambda: autoattack.apgd(small_model, x, y, eps=0.05, iterations=20),
           "apgd_t": lambda: autoattack.apgd_targeted(small_model, x, y, eps=0.05, target_classes=2, iterations=10),
           "square": lambda: autoattack.square(small_model, x, y, eps=0.05, queries=200)}[attack]
    x_adv = run()
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    np.testing.assert_array_equal(run(), x_adv)   # deterministic under the seed


def test_no_weaker_than_ibm_art(small_model, attack_set):
    """Ours against ART's APGD-CE and Square with the same settings, model and images:
    our robust accuracy is not above the top of ART's 95% interval."""
    art_evasion = pytest.importorskip("art.attacks.evasion")
    from art.estimators.classification import TensorFlowV2Classifier
    x, y = attack_set[0][:100], attack_set[1][:100]
    classifier = TensorFlowV2Classifier(small_model, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
                                        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
    y_onehot = np.eye(10, dtype=np.float32)[y]
    eps = 0.05
    art_apgd = art_evasion.AutoProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2 * eps,
                                                        max_iter=100, nb_random_init=1, loss_type="cross_entropy",
                                                        verbose=False)
    art_square = art_evasion.SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=500, p_init=0.8,
                                          nb_restarts=1, verbose=False)
    ours_apgd = robust(small_model, autoattack.apgd(small_model, x, y, eps=eps), y)
    ours_square = robust(small_model, autoattack.square(small_model, x, y, eps=eps, queries=500), y)
    theirs_apgd = robust(small_model, art_apgd.generate(x, y=y_onehot), y)
    theirs_square = robust(small_model, art_square.generate(x, y=y_onehot), y)
    assert ours_apgd["acc"] <= theirs_apgd["ci_high"], (ours_apgd, theirs_apgd)
    assert ours_square["acc"] <= theirs_square["ci_high"], (ours_square, theirs_square)
    assert ours_apgd["acc"] < robust(small_model, x, y)["acc"] - 0.1   # and both actually attack


def test_dlr_breaks_a_saturated_softmax_that_cross_entropy_cannot(small_model, attack_set):
    """Logits x 10^4 saturate the softmax: the cross-entropy's gradient is 0 in float32
    for confident images, so PGD stalls; APGD-T's DLR loss does not care about scale."""
    x, y = attack_set[0][:100], attack_set[1][:100]
    saturated = keras.Sequential([keras.Input((28, 28, 1)), small_model, keras.layers.Rescaling(1e4)])
    pgd = robust(saturated, attacks.SUITE["PGD-20"].run(saturated, x, y, 0.1, seed=0), y)
    apgd_t = robust(saturated, autoattack.apgd_targeted(saturated, x, y, eps=0.1, target_classes=3), y)
    assert apgd_t["ci_high"] < pgd["ci_low"], (pgd, apgd_t)


@keras.saving.register_keras_serializable(package="tests")
class NoGradient(keras.layers.Layer):
    """Identity on the forward pass, zero gradient: a gradient-masked 'defense'."""

    def call(self, x):
        return tf.stop_gradient(x)


def test_square_breaks_a_masked_gradient_that_apgd_cannot(small_model, attack_set):
    x, y = attack_set[0][:100], attack_set[1][:100]
    masked = keras.Sequential([keras.Input((28, 28, 1)), NoGradient(), small_model])
    apgd = robust(masked, autoattack.apgd(masked, x, y, eps=0.1, iterations=20), y)
    square = robust(masked, autoattack.square(masked, x, y, eps=0.1, queries=500), y)
    assert square["ci_high"] < apgd["ci_low"], (apgd, square)


def test_missing_adaptive_views_are_named(small_model):
    bits = filters.with_filter(filters.make_filter("bits3"), small_model)
    judge = lambda x, y: predict_labels(bits, x) == y  # noqa: E731
    assert attacks.Target(judge, (("autodiff", bits, 1),), bits).missing_adaptive_views() == [
        "no BPDA view around a filter without a useful gradient"]
    assert filters.target(bits).missing_adaptive_views() == []
    assert attacks.plain_target(small_model).missing_adaptive_views() == []
    noisy = cr.noisy_model(small_model, 0.25)
    assert attacks.Target(None, (("one draw", noisy, 1),), noisy).missing_adaptive_views() == [
        "no EOT over a randomized defense"]
    assert cr.smoothed_target(small_model, 0.25, n_vote=10, draws=4, seed=0).missing_adaptive_views() == []
    assert cr.smoothed_target(small_model, 0.25, n_vote=10, draws=4, seed=0).randomized


def test_the_worst_case_is_the_per_image_minimum(small_model, attack_set):
    x, y = attack_set[0][:60], attack_set[1][:60]
    plan = attacks.Plan(eps_grid=(0.05, 0.1), autoattack=False)
    rows, outcomes = attacks.measure(attacks.plain_target(small_model), x, y, plan, seed=1)
    within = [c for (label, eps), c in outcomes.items() if eps <= 0.1 and label != "worst case"]
    np.testing.assert_array_equal(outcomes[("worst case", 0.1)], np.logical_and.reduce(within))
    assert ("FGSM-k", round(attacks.STUDY_EPS, 4)) in outcomes and ("clean", 0.0) in outcomes
    worst = next(r for r in rows if r["attack"] == "worst case" and r["eps"] == 0.1)
    assert all(worst["acc"] <= r["acc"] for r in rows if r["eps"] <= 0.1)


def test_every_suite_attack_states_its_settings():
    for name, attack in attacks.SUITE.items():
        text = attack.describe(0.1)
        assert text and "," in text, name
    assert "0.0125" in attacks.SUITE["PGD-20"].describe(0.1)   # 2.5 eps / 20 steps
