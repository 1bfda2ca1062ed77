"""Input filters as Keras layers (median of any window, the study's dual 2x2 median,
Gaussian blur, bit-depth reduction, JPEG, random rotation), each with a BPDA mode, and
how a filter defense is attacked: its own gradient, BPDA, EOT over a random filter.
A filter defense is a Keras model whose first layer is the filter."""
import argparse
import re

import numpy as np

from fashion_defenses.attacks.suite import EOT_DRAWS, Target
from fashion_defenses.errors import UserError
from fashion_defenses.framework import keras, tf
from fashion_defenses.models import build_model, get_or_train, predict_labels

# ------------------------------------------------------------------ filter layers


@keras.saving.register_keras_serializable(package="filters")
class FilterLayer(keras.layers.Layer):
    """An input filter. With bpda=True the forward pass is unchanged and the backward
    pass is the identity (BPDA, Athalye et al. 2018): the attacker's approximation
    of a filter whose own gradient is zero, undefined or useless."""
    randomized = False       # True: a fresh random transformation at every call (needs EOT)
    differentiable = True    # False: the true gradient is zero or absent (needs BPDA)

    def __init__(self, bpda=False, **kwargs):
        super().__init__(**kwargs)
        self.bpda = bool(bpda)

    def filter(self, x):
        raise NotImplementedError

    def call(self, x):
        if not self.bpda:
            return self.filter(x)

        @tf.custom_gradient
        def filter_with_identity_gradient(inputs):
            return self.filter(inputs), lambda upstream: upstream
        return filter_with_identity_gradient(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bpda": self.bpda}


@keras.saving.register_keras_serializable(package="filters")
class MedianFilter(FilterLayer):
    """size x size median, applied `repeats` times. Equal to
    scipy.ndimage.median_filter(img, size) per image: symmetric ('reflect') borders,
    window offsets -(size//2) .. size-1-size//2, and for an even window the upper of
    the two middle values (rank size*size//2)."""

    def __init__(self, size=3, repeats=1, **kwargs):
        super().__init__(**kwargs)
        if int(size) < 1 or int(repeats) < 1:
            raise ValueError(f"median window size and repeats must be >= 1, got {size} and {repeats}")
        self.size, self.repeats = int(size), int(repeats)

    def _median_once(self, x):
        k = self.size
        before, after = k // 2, k - 1 - k // 2
        padded = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]], mode="SYMMETRIC")
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        window = [padded[:, i:i + height, j:j + width, :] for i in range(k) for j in range(k)]
        if k == 2:
            # upper median of 4 values by a min/max network: 6x faster than sorting
            a, b, c, d = window
            return tf.maximum(tf.minimum(tf.maximum(a, b), tf.maximum(c, d)),
                              tf.maximum(tf.minimum(a, b), tf.minimum(c, d)))
        return tf.sort(tf.stack(window, axis=-1), axis=-1)[..., (k * k) // 2]

    def filter(self, x):
        for _ in range(self.repeats):
            x = self._median_once(x)
        return x

    def get_config(self):
        return {**super().get_config(), "size": self.size, "repeats": self.repeats}


@keras.saving.register_keras_serializable(package="filters")
class GaussianBlur(FilterLayer):
    """Gaussian blur (5x5 kernel, symmetric borders). Smooth: its gradient is exact."""

    def __init__(self, sigma=1.0, **kwargs):
        super().__init__(**kwargs)
        self.sigma = float(sigma)
        t = np.arange(-2, 3, dtype=np.float32)
        g = np.exp(-t ** 2 / (2 * self.sigma ** 2))
        kernel = np.outer(g, g) / np.outer(g, g).sum()
        self.kernel = tf.constant(kernel[:, :, None, None], tf.float32)

    def filter(self, x):
        padded = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
        return tf.nn.conv2d(padded, self.kernel, strides=1, padding="VALID")

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}


@keras.saving.register_keras_serializable(package="filters")
class BitDepth(FilterLayer):
    """Feature squeezing (Xu et al. 2018): pixels rounded to 2**bits grey levels."""
    differentiable = False

    def __init__(self, bits=3, **kwargs):
        super().__init__(**kwargs)
        self.bits = int(bits)
        if self.bits < 1:
            raise ValueError(f"bit depth must be >= 1, got {bits}")

    def filter(self, x):
        levels = float(2 ** self.bits - 1)
        return tf.round(x * levels) / levels

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@keras.saving.register_keras_serializable(package="filters")
class JpegFilter(FilterLayer):
    """JPEG compression at a quality (the study screened JPEG 90). Runs on the CPU."""
    differentiable = False

    def __init__(self, quality=90, **kwargs):
        super().__init__(**kwargs)
        self.quality = int(quality)
        if not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")

    def filter(self, x):
        out = tf.map_fn(lambda image: tf.image.adjust_jpeg_quality(image, self.quality), x,
                        fn_output_signature=tf.float32)
        return tf.reshape(out, tf.shape(x))

    def get_config(self):
        return {**super().get_config(), "quality": self.quality}


@keras.saving.register_keras_serializable(package="filters")
class RandomRotation(FilterLayer):
    """Rotation by a fresh uniform angle in [-degrees, degrees] per image and call, at
    test time too (the study's 10-degree rotation). Randomized: attack it with EOT."""
    randomized = True

    def __init__(self, degrees=10.0, **kwargs):
        super().__init__(**kwargs)
        self.degrees = float(degrees)

    def filter(self, x):
        n = tf.shape(x)[0]
        angle = tf.random.uniform([n], -1.0, 1.0) * self.degrees * np.pi / 180
        cos, sin = tf.cos(angle), tf.sin(angle)
        cy = (tf.cast(tf.shape(x)[1], tf.float32) - 1) / 2
        cx = (tf.cast(tf.shape(x)[2], tf.float32) - 1) / 2
        zero = tf.zeros_like(cos)
        transform = tf.stack([cos, -sin, cx - cx * cos + cy * sin,
                              sin, cos, cy - cx * sin - cy * cos, zero, zero], axis=1)
        return keras.ops.image.affine_transform(x, transform, interpolation="bilinear",
                                                fill_mode="constant", data_format="channels_last")

    def get_config(self):
        return {**super().get_config(), "degrees": self.degrees}


FILTERS = {
    "dual": lambda: MedianFilter(2, repeats=2, name="dual_median"),   # the study's pick
    "median2": lambda: MedianFilter(2, name="median2"),
    "median3": lambda: MedianFilter(3, name="median3"),
    "gaussian": lambda: GaussianBlur(1.0, name="gaussian"),
    "bits3": lambda: BitDepth(3, name="bits3"),
    "jpeg90": lambda: JpegFilter(90, name="jpeg90"),
    "rotate10": lambda: RandomRotation(10.0, name="rotate10"),
}

# the filters the standard protocol trains a CNN behind (its catalogue's filter defenses);
# the filter study puts every other filter in front of the undefended CNN only
TRAINED_BEHIND = ("median3", "dual")


def make_filter(name):
    """A filter layer by name: one of FILTERS, or medianK / bitsK / jpegQ / rotateD."""
    if name in FILTERS:
        return FILTERS[name]()
    match = re.fullmatch(r"(median|bits|jpeg|rotate)(\d+)", name)
    if not match:
        raise UserError(f"unknown filter {name!r}: use one of {', '.join(FILTERS)} "
                             "or medianK, bitsK, jpegQ, rotateD")
    kind, value = match.group(1), int(match.group(2))
    try:
        layer = {"median": MedianFilter, "bits": BitDepth, "jpeg": JpegFilter,
                 "rotate": RandomRotation}[kind](value, name=name)
    except ValueError as e:
        raise UserError(f"filter {name!r}: {e}") from None
    return layer


def filter_argument(text):
    """argparse type: a valid filter name (checked by building it)."""
    try:
        make_filter(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def with_filter(filter_layer, classifier, name=None):
    """A filter defense: a Keras model whose first layer is the filter."""
    return keras.Sequential([keras.Input((28, 28, 1)), filter_layer, classifier],
                            name=name or f"{classifier.name}_{filter_layer.name}")


def filter_layers(model):
    return [layer for layer in model.layers if isinstance(layer, FilterLayer)]


def bpda_view(model):
    """The same model (shared weights) with every filter's backward pass replaced by
    the identity: what a BPDA attacker differentiates."""
    layers = [type(layer).from_config({**layer.get_config(), "bpda": True})
              if isinstance(layer, FilterLayer) else layer for layer in model.layers]
    return keras.Sequential([keras.Input((28, 28, 1)), *layers], name=model.name + "_bpda")


def attack_views(model):
    """What an adaptive attacker differentiates, as (label, model, EOT draws): the
    model itself where every filter has a gradient, its BPDA view where a filter has
    none or a poor one; EOT over a randomized filter."""
    layers = filter_layers(model)
    eot = EOT_DRAWS if any(layer.randomized for layer in layers) else 1
    views = []
    if all(layer.differentiable for layer in layers):
        views.append(("autodiff", model, eot))
    if any(not isinstance(layer, (GaussianBlur, RandomRotation)) for layer in layers):
        views.append(("BPDA", bpda_view(model), eot))
    return views


def target(model):
    """How to attack and judge a (possibly) filtered model: the model decides, and an
    image is robust only if the attack fails through every view of attack_views."""
    return Target(lambda x, y: predict_labels(model, x) == y, tuple(attack_views(model)), model)


def filter_model_name(protocol, filter_name):
    """The name in models/ of the protocol's CNN trained behind a filter."""
    return f"{protocol.architecture}_{filter_name}"


def get_filter_model(ctx, filter_name, data=None, retrain=False):
    """The protocol's CNN trained with the filter in place (cached in models/)."""
    name = filter_model_name(ctx.protocol, filter_name)
    return get_or_train(ctx, name, lambda: with_filter(make_filter(filter_name), build_model(ctx.protocol), name),
                        data, retrain, extra={"filter": filter_name})
