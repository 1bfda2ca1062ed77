"""input_preprocessing.py: the TF filters against scipy, BPDA, EOT, saving, CLI."""
import csv

import numpy as np
import pytest
from scipy.ndimage import median_filter

from conftest import assert_one_line_error, run_script
import attacks
import input_preprocessing as ip
import model as core
from model import tf


def scipy_reference(images, size, repeats=1):
    """The study's way: scipy's median filter, one 28x28 image at a time."""
    out = images[..., 0].copy()
    for _ in range(repeats):
        out = np.stack([median_filter(img, size=size) for img in out])
    return out[..., None]


def image_sets():
    rng = np.random.default_rng(0)
    yield "random floats", rng.random((8, 28, 28, 1), dtype=np.float32)
    yield "pixel grid", (rng.integers(0, 256, (8, 28, 28, 1)) / 255).astype(np.float32)
    yield "ties", (rng.integers(0, 3, (8, 28, 28, 1)) / 2).astype(np.float32)
    yield "constant", np.full((2, 28, 28, 1), 0.37, dtype=np.float32)
    edges = np.zeros((2, 28, 28, 1), dtype=np.float32)
    edges[:, 0, :], edges[:, :, -1], edges[1, -1, -1] = 1.0, 0.5, 0.25  # borders and a corner
    yield "borders", edges


@pytest.mark.parametrize("size, repeats", [(2, 1), (3, 1), (2, 2), (5, 1)])
def test_median_equals_scipy(size, repeats):
    layer = ip.MedianFilter(size, repeats=repeats)
    for label, images in image_sets():
        np.testing.assert_array_equal(np.asarray(layer(images)), scipy_reference(images, size, repeats),
                                      err_msg=label)


def test_dual_filter_is_the_studys():
    images = next(image_sets())[1]
    np.testing.assert_array_equal(np.asarray(ip.make_filter("dual")(images)),
                                  scipy_reference(images, 2, repeats=2))


@pytest.mark.parametrize("name", ["dual", "median3", "bits3", "jpeg90"])
def test_bpda_forward_is_the_filter_and_gradient_flows(name, attack_set):
    x = tf.constant(attack_set[0][:8])
    layer = ip.make_filter(name)
    bpda = type(layer).from_config({**layer.get_config(), "bpda": True})
    np.testing.assert_array_equal(np.asarray(bpda(x)), np.asarray(layer(x)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(bpda(x) ** 2)
    grad = tape.gradient(total, x).numpy()
    assert np.abs(grad).sum() > 0


def test_bit_depth_true_gradient_is_zero_so_bpda_is_needed(attack_set):
    x = tf.constant(attack_set[0][:4])
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(ip.BitDepth(3)(x) ** 2)
    grad = tape.gradient(total, x)
    assert grad is None or float(tf.reduce_sum(tf.abs(grad))) == 0.0


def test_bit_depth_and_jpeg_outputs():
    x = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
    squeezed = np.asarray(ip.BitDepth(3)(x))
    assert len(np.unique(squeezed)) <= 8 and np.abs(squeezed - x).max() <= 0.5 / 7 + 1e-6
    jpeg = np.asarray(ip.JpegFilter(90)(x))
    assert jpeg.shape == x.shape and 0 < np.abs(jpeg - x).mean() < 0.2


def test_rotation_is_random_and_eot_attack_runs(small_model, attack_set):
    x, y = attack_set
    layer = ip.make_filter("rotate10")
    a, b = np.asarray(layer(x[:4])), np.asarray(layer(x[:4]))
    assert not np.array_equal(a, b)
    defended = ip.with_filter(layer, small_model)
    x_adv = attacks.pgd(defended, x[:50], y[:50], eps=0.05, steps=3, eot_samples=4)
    assert np.abs(x_adv - x[:50]).max() <= 0.05 + 1e-6


def test_bpda_view_shares_weights_and_forward(small_model, attack_set):
    x = attack_set[0][:16]
    defended = ip.with_filter(ip.make_filter("dual"), small_model)
    view = ip.bpda_view(defended)
    np.testing.assert_allclose(view(x), defended(x), atol=1e-6)
    assert view.layers[-1] is small_model and ip.filter_layers(view)[0].bpda


def test_filter_model_saves_and_loads(tmp_path, attack_set):
    x = attack_set[0][:8]
    defended = ip.with_filter(ip.make_filter("dual"), core.build_standard_cnn(), name="m")
    core.save_model(defended, tmp_path, "m", {})
    loaded, _ = core.load_model(tmp_path, "m", ip.CUSTOM_OBJECTS)
    np.testing.assert_allclose(loaded(x), defended(x), atol=1e-6)
    assert isinstance(loaded.layers[0], ip.MedianFilter) and loaded.layers[0].repeats == 2


def test_bad_filters_are_clear_errors():
    for name in ("median0", "nonsense", "jpeg101"):
        with pytest.raises(core.UserError):
            ip.make_filter(name)
    with pytest.raises(ValueError):
        ip.MedianFilter(0)


@pytest.mark.parametrize("value", ["median0", "wavelet"])
def test_bad_filter_flag_ends_with_one_line(value):
    assert_one_line_error(run_script("input_preprocessing.py", "--filters", value))


def test_input_preprocessing_quick_end_to_end(tmp_path, quick_data):
    proc = run_script("input_preprocessing.py", "--quick", "--filters", "dual",
                      "--results-dir", tmp_path, "--models-dir", tmp_path / "models")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "input_preprocessing_standard.csv") as f:
        rows = list(csv.DictReader(f))
    dual = [r for r in rows if r["filter"] == "dual" and r["variant"] == "trained"]
    attacks_seen = {r["attack"] for r in dual}
    assert {"clean", "PGD-20 transfer", "PGD-20 adaptive", "worst case"} <= attacks_seen
    by = {(r["attack"], r["eps"]): float(r["acc"]) for r in dual}
    assert by[("worst case", "0.1")] <= min(by[("PGD-20 transfer", "0.1")], by[("PGD-20 adaptive", "0.1")])
    for name in ("input_preprocessing_standard_eps.png", "input_preprocessing_standard_examples.png",
                 "input_preprocessing_standard_summary.md"):
        assert (tmp_path / name).exists()
    assert (tmp_path / "models" / "standard_cnn_dual.keras").exists()


def test_adaptive_accuracy_is_the_worst_case_over_the_filters_views(small_model, attack_set):
    # a filter model is attacked through its own gradient and through BPDA; an image
    # counts as robust only if both fail (as in evaluation.py and the adversarial-training script)
    x, y = attack_set[0][:100], attack_set[1][:100]
    defended = ip.with_filter(ip.make_filter("dual"), small_model)
    seen = []

    def fgsm(view, eot):
        seen.append(view.name)
        return attacks.pgd(view, x, y, eps=0.1, steps=1, step_size=0.1, random_start=False, seed=0)

    correct = ip.worst_case_correct(defended, y, fgsm)
    assert seen == [defended.name, defended.name + "_bpda"]
    each = [core.predict_labels(defended, fgsm(view, 1)) == y for view in (defended, ip.bpda_view(defended))]
    np.testing.assert_array_equal(correct, each[0] & each[1])
    assert correct.sum() <= min(e.sum() for e in each)
    seen.clear()
    ip.worst_case_correct(small_model, y, fgsm)
    assert seen == [small_model.name]   # no filter: the model itself, once
