"""defenses/filters.py: the TF filters against scipy, BPDA, EOT, attack views, saving."""
import numpy as np
import pytest
from scipy.ndimage import median_filter

from fashion_defenses.attacks import gradient as gradient_attacks
from fashion_defenses.attacks import suite
from fashion_defenses.defenses import filters
from fashion_defenses.errors import UserError
from fashion_defenses.framework import tf
from fashion_defenses.models import build_standard_cnn, load_model, predict_labels, save_model


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
    layer = filters.MedianFilter(size, repeats=repeats)
    for label, images in image_sets():
        np.testing.assert_array_equal(np.asarray(layer(images)), scipy_reference(images, size, repeats),
                                      err_msg=label)


def test_dual_filter_is_the_studys():
    images = next(image_sets())[1]
    np.testing.assert_array_equal(np.asarray(filters.make_filter("dual")(images)),
                                  scipy_reference(images, 2, repeats=2))


def input_gradient(model, x):
    """Gradient of the summed cross-entropy (label 0) with respect to the input."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(gradient_attacks.per_example_loss(model(x, training=False), tf.zeros(len(x), tf.int32)))
    return tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy()


@pytest.mark.parametrize("name", ["dual", "median3", "bits3", "jpeg90"])
def test_bpda_passes_the_gradient_through_the_filter_unchanged(name, small_model, attack_set):
    """BPDA's backward pass is the identity: the gradient through the BPDA view at x is
    the plain gradient of the classifier behind the filter at the filtered image."""
    x = attack_set[0][:8]
    defended = filters.with_filter(filters.make_filter(name), small_model)
    view = filters.bpda_view(defended)
    np.testing.assert_array_equal(np.asarray(view(x)), np.asarray(defended(x)))   # same forward pass
    filtered = np.asarray(filters.filter_layers(defended)[0](x))
    behind = input_gradient(small_model, filtered)
    np.testing.assert_allclose(input_gradient(view, x), behind, rtol=1e-4, atol=1e-7)
    assert np.abs(behind).sum() > 0


def test_true_gradient_of_the_median_differs_from_bpda(small_model, attack_set):
    """The check above can fail: without BPDA the dual median's own gradient (a
    scatter onto the median pixels) is not the classifier's gradient behind it."""
    x = attack_set[0][:8]
    defended = filters.with_filter(filters.make_filter("dual"), small_model)
    filtered = np.asarray(filters.filter_layers(defended)[0](x))
    assert not np.allclose(input_gradient(defended, x), input_gradient(small_model, filtered), rtol=1e-4, atol=1e-7)


def view_labels(model):
    return [(label, eot) for label, _, eot in filters.attack_views(model)]


def test_each_filter_is_attacked_through_the_views_it_needs(small_model):
    """Bit depth and JPEG have no useful gradient: BPDA only. The median is attacked
    through its own gradient and BPDA; the Gaussian blur (smooth) through its own;
    the random rotation with EOT; a model without a filter through itself."""
    views = {name: view_labels(filters.with_filter(filters.make_filter(name), small_model))
             for name in ("bits3", "jpeg90", "dual", "gaussian", "rotate10")}
    assert views["bits3"] == [("BPDA", 1)] and views["jpeg90"] == [("BPDA", 1)]
    assert views["dual"] == [("autodiff", 1), ("BPDA", 1)]
    assert views["gaussian"] == [("autodiff", 1)]
    assert views["rotate10"] == [("autodiff", suite.EOT_DRAWS)]
    assert view_labels(small_model) == [("autodiff", 1)]


def test_an_attack_through_bit_depths_own_gradient_goes_nowhere_bpda_does(small_model, attack_set):
    """Why bit depth needs BPDA: through its own (zero) gradient PGD without random
    start cannot move an image; through BPDA it breaks many."""
    x, y = attack_set[0][:100], attack_set[1][:100]
    defended = filters.with_filter(filters.make_filter("bits3"), small_model)
    options = dict(eps=0.1, steps=5, step_size=0.02, random_start=False)
    np.testing.assert_array_equal(gradient_attacks.pgd(defended, x, y, **options), x)
    x_bpda = gradient_attacks.pgd(filters.bpda_view(defended), x, y, **options)
    clean = np.mean(predict_labels(defended, x) == y)
    assert np.mean(predict_labels(defended, x_bpda) == y) < clean - 0.2


def test_bit_depth_and_jpeg_outputs():
    x = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
    squeezed = np.asarray(filters.BitDepth(3)(x))
    assert len(np.unique(squeezed)) <= 8 and np.abs(squeezed - x).max() <= 0.5 / 7 + 1e-6
    jpeg = np.asarray(filters.JpegFilter(90)(x))
    assert jpeg.shape == x.shape and 0 < np.abs(jpeg - x).mean() < 0.2


def test_eot_averages_the_gradient_over_the_random_rotation(small_model, attack_set):
    """EOT through the rotation is an average over its draws: two EOT-32 gradients
    agree far better than two single-draw gradients (they would agree no better if
    the draws were ignored)."""
    x, y = tf.constant(attack_set[0][:16]), tf.constant(attack_set[1][:16])
    defended = filters.with_filter(filters.make_filter("rotate10"), small_model)
    assert not np.array_equal(np.asarray(defended.layers[0](x[:4])), np.asarray(defended.layers[0](x[:4])))

    def disagreement(eot):
        a, b = (gradient_attacks._input_gradient(defended, x, y, "ce", eot).numpy() for _ in range(2))
        return np.linalg.norm(a - b) / np.linalg.norm(a + b)
    assert disagreement(32) < 0.5 * disagreement(1)


def test_bpda_view_shares_weights_and_forward(small_model, attack_set):
    x = attack_set[0][:16]
    defended = filters.with_filter(filters.make_filter("dual"), small_model)
    view = filters.bpda_view(defended)
    np.testing.assert_allclose(view(x), defended(x), atol=1e-6)
    assert view.layers[-1] is small_model and filters.filter_layers(view)[0].bpda


def test_an_attack_counts_through_every_view(small_model, attack_set):
    """A filter model is attacked through its own gradient and through BPDA; an image
    counts as robust only if both fail."""
    x, y = attack_set[0][:100], attack_set[1][:100]
    defended = filters.with_filter(filters.make_filter("dual"), small_model)
    correct = filters.target(defended).outcome(suite.SUITE["FGSM"], x, y, 0.1, seed=0)
    each = [predict_labels(defended, gradient_attacks.fgsm(view, x, y, eps=0.1)) == y
            for view in (defended, filters.bpda_view(defended))]
    np.testing.assert_array_equal(correct, each[0] & each[1])
    assert (each[0] != each[1]).any()   # the two views break different images: both are needed


@pytest.mark.parametrize("name", ["dual", "gaussian", "bits3", "jpeg90", "rotate10"])
def test_filter_model_saves_and_loads_without_custom_objects(name, tmp_path, attack_set):
    x = attack_set[0][:8]
    defended = filters.with_filter(filters.make_filter(name), build_standard_cnn(), name="m")
    save_model(defended, tmp_path, "m", {})
    loaded, _ = load_model(tmp_path, "m")
    assert type(loaded.layers[0]) is type(defended.layers[0])
    assert loaded.layers[0].get_config() == defended.layers[0].get_config()
    if name != "rotate10":   # random: a fresh angle per call
        np.testing.assert_allclose(loaded(x), defended(x), atol=1e-6)


def test_bad_filters_are_clear_errors():
    for name in ("median0", "nonsense", "jpeg101"):
        with pytest.raises(UserError):
            filters.make_filter(name)
    with pytest.raises(ValueError):
        filters.MedianFilter(0)
