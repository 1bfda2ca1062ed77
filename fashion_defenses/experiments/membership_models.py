"""One model of a defense's recipe for membership inference (privacy/design.py),
queried once: its outputs on the controlled and the population images saved in
results/mia/outputs/, so that no model is needed again; the attacks
(experiments/membership_inference.py) read them. The pipeline runs one model per job
(membership_outputs.py); nothing here depends on how the attacks report."""
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from fashion_defenses.attacks.outcome_store import array_fingerprint, model_fingerprint
from fashion_defenses.data import Data, load_data
from fashion_defenses.defenses.catalogue import catalogue
from fashion_defenses.errors import UserError
from fashion_defenses.framework import tf
from fashion_defenses.models import predict_logits
from fashion_defenses.privacy import design as md
from fashion_defenses.privacy import signals
from fashion_defenses.reporting import atomic_write

NOISY_QUERIES = 32          # a smoothed classifier answers with its mean softmax over this many draws
POPULATION = 10000          # RMIA's population samples: at most this many validation images
# the augmented queries of RMIA's paper configuration: flipped left-right or not, shifted by
# at most one pixel (the RMIA code's CIFAR-10 count, 18); the identity first
AUGMENTATIONS = tuple((flip, dy, dx) for flip in (False, True) for dy in (0, -1, 1) for dx in (0, -1, 1))
QUICK_AUGMENTATIONS = ((False, 0, 0), (True, 0, 0), (False, 1, 1))   # --quick: a smoke run's three


def default_members(ctx):
    """Members audited per target: every controlled image (None) in the standard
    protocol; the study's 2,000 in the paper's (200 under --quick)."""
    if ctx.protocol.name == "paper":
        return 200 if ctx.quick else 2000
    return None


def design_for(data, n, models, seed):
    """The protocol's membership design (privacy/design.py), or one clear line why not;
    n None: every controlled image audited."""
    try:
        return md.membership_design(len(data.y_train), len(data.y_test), n, models, seed)
    except ValueError as e:   # its message names what is wrong: the members or the models per recipe
        raise UserError(str(e)) from None


def population_images(data):
    """RMIA's population samples z: validation images, in no model's training data."""
    return data.x_val[:POPULATION], data.y_val[:POPULATION]


def augment(x, flip, dy, dx):
    """x flipped left-right (flip) and shifted by (dy, dx) pixels, zeros shifted in."""
    out = x[:, :, ::-1] if flip else x
    out = np.roll(out, (dy, dx), axis=(1, 2))
    if dy:
        out[:, 0 if dy > 0 else -1] = 0
    if dx:
        out[:, :, 0 if dx > 0 else -1] = 0
    return out


def controlled_images(data, design):
    """The controlled images (x, y): the first m training images, then the first m test images."""
    m = design.m
    return np.concatenate([data.x_train[:m], data.x_test[:m]]), np.concatenate([data.y_train[:m], data.y_test[:m]])


def model_data(data, design, r):
    """What model r > 0 of a recipe trains on: the training images every model shares
    and its half of the controlled images; validated on the protocol's validation images."""
    x_c, y_c = controlled_images(data, design)
    half = design.training_positions(r)
    x = np.concatenate([data.x_train[design.m:], x_c[half]])
    y = np.concatenate([data.y_train[design.m:], y_c[half]])
    # Fashion-MNIST indices: a training image's index, a test image's 60,000 + its index
    controlled_index = np.r_[data.train_index[:design.m], 60000 + data.test_index[:design.m]]
    index = np.r_[data.train_index[design.m:], controlled_index[half]]
    return Data(x, y, data.x_val, data.y_val, data.x_test[:0], data.y_test[:0], index, data.val_index,
                np.arange(0))


def model_context(ctx, design, r, references_dir=None):
    """Where model r > 0 of a recipe is cached (under references_dir, by default the
    models folder's references/) and the seed it trains with: its own initialisation."""
    folder = Path(references_dir or ctx.models_dir / "references") / f"loo{2 * design.m}_seed{ctx.seed}_model{r}"
    folder.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(ctx, models_dir=folder, seed=(ctx.seed + r) % 2 ** 32)


def query_logits(model, x, noise_sigma=None, seed=0):
    """The model's logits; for a smoothed classifier the log of its mean softmax
    over NOISY_QUERIES Gaussian draws (its 'noisy predictions')."""
    if not noise_sigma:
        return predict_logits(model, x)
    rng = np.random.default_rng(seed)
    probs = np.zeros((len(x), 10), np.float64)
    for _ in range(NOISY_QUERIES):
        noisy = (x + noise_sigma * rng.standard_normal(x.shape)).astype(np.float32)
        probs += tf.nn.softmax(predict_logits(model, noisy)).numpy()
    return np.log(probs / NOISY_QUERIES + 1e-12).astype(np.float32)


def augmentations(quick):
    return QUICK_AUGMENTATIONS if quick else AUGMENTATIONS


def model_outputs(model, x, y, noise_sigma=None, seed=0, queries=AUGMENTATIONS):
    """What every attack needs of one model on images x with labels y (so the model is
    never needed again): log Pr(y|x), log(1 - Pr(y|x)) and the top softmax probability
    on the clean query, and RMIA's paper-configuration signal on each augmented query
    (a smoothed classifier: on its clean query alone, which already averages
    NOISY_QUERIES noisy draws)."""
    logits = query_logits(model, x, noise_sigma, seed)
    log_probs = signals.log_softmax(logits)
    rows = np.arange(len(y))
    others = log_probs.copy()
    others[rows, y] = -np.inf
    queries = queries[:1] if noise_sigma else queries   # the identity first
    signal = [signals.taylor_soft_margin(logits if a == (False, 0, 0) else
                                    query_logits(model, augment(x, *a), noise_sigma, seed), y) for a in queries]
    outputs = {"log_p_true": log_probs[rows, y], "log_p_rest": np.logaddexp.reduce(others, axis=-1),
               "max_prob": np.exp(log_probs.max(axis=1)), "rmia_augmented_signal": np.stack(signal)}
    return {k: v.astype(np.float32) for k, v in outputs.items()}   # 2 MB a model at 25,000 images, compressed


def outputs_path(results_dir, protocol_name, defense, r):
    """Where model r of a defense's recipe has its outputs (model 0: the defense's own):
    one folder per trained model and r, one file per defense deploying it."""
    return Path(results_dir) / "mia" / "outputs" / protocol_name / defense.name / f"model{r}" / f"{defense.key}.npz"


@dataclasses.dataclass
class RecipeModels:
    """The models of every defense's recipe under one design: where the extra ones are
    cached, and their outputs. from_outputs: saved outputs only (no model is loaded or
    trained; a missing or outdated file is an error)."""
    ctx: object
    data: object
    design: md.MembershipDesign
    references_dir: object = None      # where models 1.. are cached (default: models_dir/references)
    from_outputs: bool = False

    def reference_model(self, defense, r):
        """Model r > 0 of the defense's recipe, trained and cached when missing."""
        return defense.load_reference(model_context(self.ctx, self.design, r, self.references_dir),
                                      model_data(self.data, self.design, r))

    def settings(self, defense, r):
        """What a model's saved outputs depend on besides the model itself."""
        return {"protocol": self.ctx.protocol.name, "quick": self.ctx.quick, "seed": self.ctx.seed, "model": r,
                "defense": defense.key, "sigma": defense.sigma, "noisy_queries": NOISY_QUERIES if defense.sigma else 0,
                "design": array_fingerprint(self.design.inside), "augmentations": augmentations(self.ctx.quick),
                "signal": dataclasses.asdict(signals.SOFT_MARGIN_TAYLOR), "population": POPULATION}

    def outputs(self, defense, own_model, r):
        """Model r's outputs on the controlled then the population images: from its file
        when that was made with these settings (and, where the model is at hand, by
        this model), otherwise computed (training a missing reference model) and saved."""
        path = outputs_path(self.ctx.results_dir, self.ctx.protocol.name, defense, r)
        settings = json.loads(json.dumps(self.settings(defense, r)))
        saved = load_outputs(path)
        if self.from_outputs:
            if saved is None or saved[1] != settings:
                raise UserError(f"{path} is {'missing' if saved is None else 'outdated'}: run membership_outputs.py "
                                f"--defense \"{defense.label}\" --model {r} (its pipeline job)")
            return saved[0]
        model = own_model if r == 0 else self.reference_model(defense, r)
        fingerprint = model_fingerprint(model)
        if saved is not None and saved[1] == settings and saved[2] == fingerprint:
            return saved[0]
        x_c, y_c = controlled_images(self.data, self.design)
        x_z, y_z = population_images(self.data)
        outputs = model_outputs(model, np.concatenate([x_c, x_z]), np.concatenate([y_c, y_z]), defense.sigma,
                                self.ctx.seed, augmentations(self.ctx.quick))
        save_outputs(path, outputs, settings, fingerprint)
        return outputs


def save_outputs(path, outputs, settings, fingerprint):
    atomic_write(path, lambda f: np.savez_compressed(f, settings=json.dumps(settings), model=fingerprint, **outputs))


def load_outputs(path):
    """(outputs, settings, model fingerprint) of a saved file, or None."""
    if not Path(path).exists():
        return None
    with np.load(path) as saved:
        outputs = {k: saved[k] for k in saved.files if k not in ("settings", "model")}
        return outputs, json.loads(str(saved["settings"])), str(saved["model"])


def write_model_outputs(ctx, n, models, defense_name, r, references_dir=None):
    """Model r of a defense's recipe (0: the defense's own, from the models folder; 1..:
    trained when not cached) queried once: its outputs saved for every defense of the
    protocol that deploys the same trained model (the dual filter in front of the
    paper's CNN shares the CNN's). What a pipeline job runs, one model each."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    design = design_for(data, n, models, ctx.seed)
    defenses = catalogue(ctx, data)
    chosen = [d for d in defenses if defense_name in (d.label, d.key)]
    if not chosen:
        raise UserError(f"no defense {defense_name!r} in the {ctx.protocol.name} protocol; its defenses: "
                        f"{', '.join(d.label for d in defenses)}")
    if not 0 <= r < design.models:
        raise UserError(f"--model {r}: a recipe has models 0 to {design.models - 1}")
    recipe_models = RecipeModels(ctx, data, design, references_dir)
    for defense in [d for d in defenses if d.name == chosen[0].name]:
        model = defense.load(ctx.models_dir) if r == 0 else None
        if r == 0 and model is None:
            raise UserError(f"{ctx.models_dir / (defense.name + '.keras')} is missing: train the defense first")
        start = time.time()
        recipe_models.outputs(defense, model, r)
        print(f"wrote {outputs_path(ctx.results_dir, ctx.protocol.name, defense, r)} "
              f"({time.time() - start:.0f} s)")
