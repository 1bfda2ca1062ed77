"""Adversarial training with adversarial examples made for every mini-batch: one
Keras trainer for the recipes of defenses/recipes.py (the study's code `study`, `fgsm`,
`fgsm-rs` with a catastrophic-overfitting guard, `pgd`, `trades`, optionally behind an
input filter), the study's once-made uint8 images, training that resumes and saves
snapshots. The experiments are in experiments/runtime_adversarial_training.py."""
import dataclasses

import numpy as np

from fashion_defenses.attacks import gradient as gradient_attacks
from fashion_defenses.attacks import suite
from fashion_defenses.data import SPLIT_SEED, attack_subset
from fashion_defenses.defenses import filters
from fashion_defenses.defenses.recipes import PAPER_ROWS, PAPER_TRAINING
from fashion_defenses.errors import UserError
from fashion_defenses.framework import keras, tf
from fashion_defenses.models import (
    base_model_name,
    build_model,
    compile_model,
    get_base_model,
    load_model,
    make_optimizer,
    model_path,
    predict_labels,
    save_model,
)
from fashion_defenses.training import EpochLog, KeepBest, fit_epochs

STUDY_STEP_255 = 0.085   # the study's FGSM step, applied to 0..255 pixels (a [0,1] value carried over)


# ------------------------------------------------------------- the study's code

def study_perturbation(model, x, y):
    """The study's adversarial images: one FGSM step of 0.085 on 0..255 pixels, made
    once, stored as uint8. Truncation makes a pixel drop by one grey level where the
    gradient sign is negative (0 stays 0) and leaves it unchanged elsewhere. The
    gradient is the cross-entropy's on the logits: the study passed the whole softmax
    output to Keras' categorical cross-entropy, which then uses the logits Keras keeps on
    it (unlike FGSM-k's sliced output, which loses them; see docs/study.md)."""
    levels = np.round(x * 255.0)
    stepped = gradient_attacks.fgsm(model, x, y, eps=STUDY_STEP_255 / 255.0, loss="ce")
    sign = np.sign(np.round((stepped * 255.0 - levels) / STUDY_STEP_255))
    return (np.clip(np.floor(levels + STUDY_STEP_255 * sign), 0, 255) / 255.0).astype(np.float32)


# ----------------------------------------------------------------- the trainer

@keras.saving.register_keras_serializable(package="adversarial_training")
class AdversarialTrainer(keras.Model):
    """Trains `classifier` on adversarial examples made on the fly for every batch
    (attacks from attacks/gradient.py, run in inference mode inside the compiled train step)."""

    def __init__(self, classifier, recipe, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.classifier, self.recipe, self.seed = classifier, recipe, seed
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.step_counter = tf.Variable(0, trainable=False, dtype=tf.int32)

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def adversarial_examples(self, x, y, target_probs=None):
        r = self.recipe
        eps = tf.constant(r.eps, tf.float32)
        seed = tf.stack([tf.constant(self.seed, tf.int32), self.step_counter])
        if r.method == "fgsm":
            delta = gradient_attacks.pgd_start(x, eps, seed, "linf", False)
            return x + gradient_attacks.pgd_step(self.classifier, x, delta, y, eps, eps, "linf", "ce", 1)
        if r.method == "fgsm-rs":   # Wong, Rice & Kolter 2020: random start, step 1.25 eps
            delta = gradient_attacks.pgd_start(x, eps, seed, "linf", True)
            return x + gradient_attacks.pgd_step(self.classifier, x, delta, y, eps, 1.25 * eps, "linf", "ce", 1)
        step = tf.constant(2.5 * r.eps / r.steps, tf.float32)
        if r.method == "trades":     # start near x, maximise KL(clean || adversarial)
            delta = tf.clip_by_value(x + 0.001 * tf.random.stateless_normal(tf.shape(x), seed), 0, 1) - x
            labels, loss = target_probs, "kl"
        else:
            delta, labels, loss = gradient_attacks.pgd_start(x, eps, seed, "linf", True), y, "ce"
        for _ in range(r.steps):
            delta = gradient_attacks.pgd_step(self.classifier, x, delta, labels, eps, step, "linf", loss, 1)
        return x + delta

    def method_loss(self, x, y, x_adv, training=True):
        """The recipe's training loss on a batch and its adversarial examples."""
        r = self.recipe
        adv_logits = self.classifier(x_adv, training=training)
        if r.method == "trades":
            clean_logits = self.classifier(x, training=training)
            loss = tf.reduce_mean(gradient_attacks.per_example_loss(clean_logits, y, "ce")) + r.beta * tf.reduce_mean(
                gradient_attacks.per_example_loss(adv_logits, tf.nn.softmax(clean_logits), "kl"))
        else:
            loss = tf.reduce_mean(gradient_attacks.per_example_loss(adv_logits, y, "ce"))
            if r.clean_weight > 0:
                logits = self.classifier(x, training=training)
                clean = tf.reduce_mean(gradient_attacks.per_example_loss(logits, y, "ce"))
                loss = r.clean_weight * clean + (1 - r.clean_weight) * loss
        if self.classifier.losses:
            loss += tf.add_n(self.classifier.losses)
        return loss, adv_logits

    def make_adversarial(self, x, y):
        """This batch's adversarial examples, for the current weights."""
        target = tf.nn.softmax(self.classifier(x, training=False)) if self.recipe.method == "trades" else None
        return tf.stop_gradient(self.adversarial_examples(x, y, target))

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        y = tf.cast(y, tf.int32)
        self.step_counter.assign_add(1)
        x_adv = self.make_adversarial(x, y)
        with tf.GradientTape() as tape:
            loss, adv_logits = self.method_loss(x, y, x_adv)
        variables = self.classifier.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(y, adv_logits)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.classifier(x, training=False)
        self.loss_tracker.update_state(tf.reduce_mean(gradient_attacks.per_example_loss(logits, y, "ce")))
        self.accuracy_tracker.update_state(y, logits)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}


GUARD_DROP = 0.2   # Wong et al.'s early stop: PGD accuracy this far below its best is a collapse


class RobustnessMonitor(EpochLog):
    """Clean and PGD accuracy on a fixed held-out set after every epoch, plus seconds
    (kept in log_path, so a resumed run still reports every epoch), and in the epoch's
    logs as pgd_acc, which Wong et al.'s guard against catastrophic overfitting watches
    (model.KeepBest with drop)."""

    def __init__(self, classifier, x, y, eps, measure=None, log_path=None):
        super().__init__(log_path)
        self.classifier, self.x, self.y, self.eps = classifier, x, y, eps
        self.measure = measure or self._measure

    def _measure(self):
        clean = float(np.mean(predict_labels(self.classifier, self.x) == self.y))
        x_adv = suite.SUITE["PGD-10"].run(self.classifier, self.x, self.y, self.eps, seed=1)
        return clean, float(np.mean(predict_labels(self.classifier, x_adv) == self.y))

    def on_epoch_end(self, epoch, logs=None):
        clean, robust = self.measure()
        entry = self.record(epoch, loss=float((logs or {}).get("loss", np.nan)), clean_acc=clean, pgd_acc=robust,
                            pgd_eps=self.eps)
        print(f"  epoch {epoch + 1}: loss {entry['loss']:.4f}, held-out clean {100 * clean:.1f}%, "
              f"PGD-10 {100 * robust:.1f}%, {entry['seconds']} s")
        if logs is not None:
            logs["pgd_acc"] = robust


# ------------------------------------------------------------------- training

def monitor_images(quick):
    """How many held-out images' clean and PGD-10 accuracy is logged after every epoch."""
    return 100 if quick else 500


def monitor_set(data, n):
    idx = attack_subset(len(data.y_val), n, seed=SPLIT_SEED + 1)
    return data.x_val[idx], data.y_val[idx]


def initial_model(ctx, recipe, data):
    """The network to train: a saved model (fine-tuning), or a fresh CNN, with the
    recipe's filter in front unless the saved model already has one."""
    if recipe.method == "study" and not recipe.init:  # the study fine-tuned its trained CNN
        recipe = dataclasses.replace(recipe, init=base_model_name(ctx.protocol))
        get_base_model(ctx, data)
    if recipe.init:
        model, _ = load_model(ctx.models_dir, recipe.init)
        if model is None:
            raise UserError(f"--init {recipe.init}: no {model_path(ctx.models_dir, recipe.init)}")
        if recipe.filter and not filters.filter_layers(model):
            model = filters.with_filter(filters.make_filter(recipe.filter), model)
        return model
    classifier = build_model(ctx.protocol)
    return filters.with_filter(filters.make_filter(recipe.filter), classifier) if recipe.filter else classifier


def study_training_images(model, data):
    """The study's adversarial training set (its once-made uint8 images) and the size
    of the perturbation it carries."""
    x_train = study_perturbation(model, data.x_train, data.y_train)
    delta = (x_train - data.x_train).reshape(len(x_train), -1)
    size = {"linf_max": float(np.abs(delta).max()), "l2_mean": float(np.linalg.norm(delta, axis=1).mean()),
            "fraction_of_pixels_changed": float(np.mean(np.abs(delta) > 1e-6))}
    print(f"  the study's 'adversarial' images: L-inf {size['linf_max']:.4f}, mean L2 {size['l2_mean']:.3f}, "
          f"{100 * size['fraction_of_pixels_changed']:.1f}% of pixels changed")
    return x_train, size


class Snapshots(keras.callbacks.Callback):
    """Saves the model after each of the recipe's snapshot epochs under the name of the
    same recipe run for that many epochs: training is deterministic, so the snapshot is
    that shorter run's model (the study's 20- and 25-epoch rows are the first epochs of
    its 50-epoch run)."""

    def __init__(self, ctx, recipe, monitor, extra):
        super().__init__()
        self.ctx, self.recipe, self.monitor, self.extra = ctx, recipe, monitor, extra

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.recipe.snapshots:
            shorter = self.recipe.snapshot(epoch + 1)
            save_run(self.ctx, self.monitor.classifier, shorter, self.monitor, self.extra,
                     snapshot_of=self.recipe.name(self.ctx.protocol.architecture))


def save_run(ctx, model, recipe, monitor, extra, snapshot_of=None, collapsed_at=None):
    """Save a trained model with its sidecar: recipe, seed, data, epoch log (up to the
    recipe's last epoch) and what extra holds."""
    name = recipe.name(ctx.protocol.architecture)
    log = monitor.log[:recipe.epochs]
    seconds = sum(entry["seconds"] for entry in log)
    sidecar = {"protocol": ctx.protocol.name, "recipe": dataclasses.asdict(recipe), "seed": ctx.seed,
               "quick": ctx.quick, "epochs_run": len(log), "train_seconds": round(seconds, 1),
               "seconds_per_epoch": round(seconds / max(len(log), 1), 1), "collapsed_at_epoch": collapsed_at,
               "epoch_log": log, "snapshot_of": snapshot_of, **extra}
    save_model(model, ctx.models_dir, name, sidecar)
    print(f"saved {model_path(ctx.models_dir, name)} ({seconds:.0f} s)")


def train_adversarially(ctx, recipe, data, retrain=False):
    """Train (or load from the cache, unless retrain) one recipe for exactly
    recipe.epochs (a run's recipes come through Recipe.for_run); returns (model, sidecar)."""
    protocol = ctx.protocol
    name = recipe.name(protocol.architecture)
    cached, sidecar = (None, None) if retrain else load_model(ctx.models_dir, name)
    if cached is not None:
        print(f"loaded {model_path(ctx.models_dir, name)}")
        return cached, sidecar
    keras.utils.set_random_seed(ctx.seed)
    model = initial_model(ctx, recipe, data)
    x_mon, y_mon = monitor_set(data, monitor_images(ctx.quick))
    monitor = RobustnessMonitor(model, x_mon, y_mon, recipe.eps, log_path=ctx.models_dir / f".{name}_epochs.json")
    extra = {"data": data.describe()}
    x_train = data.x_train
    if recipe.method == "study":   # the study fine-tuned on its once-made images alone, no validation
        x_train, extra["study_perturbation"] = study_training_images(model, data)
        trainer = compile_model(model, protocol)
    else:
        trainer = AdversarialTrainer(model, recipe, seed=ctx.seed)
        trainer.compile(optimizer=make_optimizer(protocol))
        trainer(data.x_train[:1])  # build it, so that a checkpoint can be loaded into it
    guard = KeepBest("pgd_acc", drop=GUARD_DROP) if recipe.method == "fgsm-rs" else None
    print(f"training {name}: {recipe}")
    _, collapsed_at = fit_epochs(trainer, x_train, data.y_train, epochs=recipe.epochs, batch_size=recipe.batch_size,
                                 seed=ctx.seed, checkpoint_dir=ctx.models_dir / f".{name}_backup", keep_best=guard,
                                 callbacks=[monitor, Snapshots(ctx, recipe, monitor, extra)])
    if collapsed_at:
        print(f"  catastrophic overfitting at epoch {collapsed_at} (PGD accuracy more than {GUARD_DROP:g} below "
              "its best): stopped, best epoch's weights restored")
    monitor.finish()
    save_run(ctx, model, recipe, monitor, extra, collapsed_at=collapsed_at)
    return model, load_model(ctx.models_dir, name)[1]


# ----------------------------------------------------------------- experiments

def train_paper(ctx, data, retrain=False):
    """The study's two fine-tuning runs (and so every snapshot its rows measure);
    returns each run's epoch log."""
    logs = {}
    for recipe in PAPER_TRAINING:
        recipe = recipe.for_run(ctx.quick)
        sidecar = train_adversarially(ctx, recipe, data, retrain)[1]
        snapshots = " and ".join(map(str, recipe.snapshots))
        label = recipe.label() + (f" (after epochs {snapshots}: the shorter rows)" if snapshots else "")
        logs[label] = sidecar.get("epoch_log", [])
    return logs


def paper_model(ctx, key, data):
    """The study's row `key` as the study measured it: its fine-tuned CNN, with the dual
    filter in front at prediction time where the row has it. Returns (model, saved
    model's name, its sidecar)."""
    recipe, filter_name = PAPER_ROWS[key]
    recipe = recipe.for_run(ctx.quick)
    model, sidecar = train_adversarially(ctx, recipe, data)
    if filter_name:
        model = filters.with_filter(filters.make_filter(filter_name), model)
    return model, recipe.name(ctx.protocol.architecture), sidecar
