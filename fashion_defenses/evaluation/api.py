"""Evaluate any Keras classifier from Python, as evaluation.py evaluates every defense:

    from fashion_defenses import evaluate
    result = evaluate(model, eps=0.1)
    print(result.autoattack, result.worst_case, result.passed)

The result is typed (EvaluationResult): every attack's robust accuracy with its exact
95% interval, the AutoAttack and worst-case figures, the sanity checks, and per image
of the attacked set which attack at which budget broke it."""
import dataclasses
from pathlib import Path

import numpy as np

from fashion_defenses.attacks import suite
from fashion_defenses.context import RunContext
from fashion_defenses.data import PROTOCOLS, attack_subset, load_data
from fashion_defenses.errors import UserError
from fashion_defenses.evaluation import core
from fashion_defenses.evaluation.checks import sanity_checks
from fashion_defenses.evaluation.report import (
    autoattack_row,
    find,
    fixed_images,
    leaderboard,
    mia_results,
    published_records,
)
from fashion_defenses.reporting import atomic_write


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One row of an evaluation: an attack (or "clean"/"benign") at a budget, on a set
    of images, with its accuracy and exact 95% Clopper-Pearson interval."""
    attack: str
    norm: str
    eps: float
    images: str
    settings: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float

    @classmethod
    def from_row(cls, row):
        return cls(row["attack"], row["norm"], row["eps"], row["images"], row["settings"], row["n"], row["acc"],
                   row["ci_low"], row["ci_high"])

    def row(self):
        """As the tables hold it (accuracy under "acc")."""
        return {"attack": self.attack, "norm": self.norm, "eps": self.eps, "images": self.images,
                "settings": self.settings, "n": self.n, "acc": self.accuracy, "ci_low": self.ci_low,
                "ci_high": self.ci_high}

    def __str__(self):
        return (f"{self.attack} ({self.norm} {self.eps:g}): {100 * self.accuracy:.1f}% "
                f"[{100 * self.ci_low:.1f}, {100 * self.ci_high:.1f}] of {self.n}")


@dataclasses.dataclass(frozen=True)
class Check:
    """One of Carlini et al.'s sanity checks: passed or not, and what it saw."""
    name: str
    passed: bool
    detail: str


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """A defense evaluated. robust[(attack, eps)] is, per image of `images` (test-set
    indices of the fixed attacked set), whether it was still classified right after
    that attack at that budget ("benign": before any attack; "worst case": after
    every attack at a budget <= eps)."""
    name: str
    eps: float
    attacked_through: str
    judged_by: str
    measurements: tuple
    checks: tuple
    images: np.ndarray
    robust: dict
    protocol: str = "standard"

    @property
    def clean(self):
        """Accuracy on the whole test set."""
        return next(m for m in self.measurements if m.attack == "clean")

    @property
    def autoattack(self):
        """AutoAttack's standard version at eps (its rand version for a randomized defense)."""
        return _measurement(autoattack_row(self.rows(), fixed_images(self.rows()), self.eps))

    @property
    def worst_case(self):
        """Per image, robust only if no attack of the suite at a budget <= eps broke it."""
        return _measurement(find(self.rows(), "worst case", self.eps, fixed_images(self.rows())))

    @property
    def passed(self):
        return all(check.passed for check in self.checks)

    def broken_by(self, attack, eps):
        """Test-set indices of the images classified right before any attack that this
        attack at this budget made the defense misclassify."""
        return self.images[self.robust[("benign", 0.0)] & ~self.robust[(attack, round(float(eps), 4))]]

    def save(self, path):
        """The per-image flags as one .npz (the format of results/per_image/)."""
        save_per_image(path, self.images, self.robust)

    def rows(self):
        """The measurements as the tables hold them."""
        return [m.row() for m in self.measurements]

    def among_published(self, results_dir="results"):
        """(defense, rows, checks) of every defense whose evaluation results_dir holds
        (the run's committed records), then this result's as "your model"."""
        from fashion_defenses.defenses import catalogue
        config = PROTOCOLS[self.protocol]
        ctx = RunContext(config, config.seed, False, None, Path(results_dir), Path("models"))
        published = published_records(results_dir, self.protocol, catalogue.catalogue(ctx, None))
        mine = catalogue.Defense(self.name, "your model", self.name, train=None)
        return [(d, r["rows"], r["checks"]) for d, r in published] + \
            [(mine, self.rows(), [(c.name, c.passed, c.detail) for c in self.checks])]

    def leaderboard(self, results_dir="results"):
        """The headline's summary row of this result among those of the published
        defenses, the most robust first."""
        return leaderboard(self.among_published(results_dir), mia_results(results_dir, self.protocol),
                           core.SETTINGS[self.protocol], results_dir)


def _measurement(row):
    return None if row is None else Measurement.from_row(row)


def save_per_image(path, images, robust):
    """One .npz, written atomically: images (test-set indices), attacks and eps (one
    entry per row of robust) and robust (a bool matrix, attack x image). Every robust
    accuracy of the set is a row's mean."""
    keys = list(robust)
    arrays = dict(images=np.asarray(images), attacks=np.array([a for a, _ in keys]),
                  eps=np.array([e for _, e in keys], dtype=float),
                  robust=np.array([robust[k] for k in keys], dtype=bool).reshape(len(keys), len(images)))
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def load_per_image(path):
    """(images, robust) as save_per_image wrote them: robust[(attack, eps)] per image."""
    with np.load(path) as saved:
        return saved["images"], {(str(a), float(e)): row for a, e, row in
                                 zip(saved["attacks"], saved["eps"], saved["robust"])}


def evaluate_target(ctx, settings, data, defense, model, transfer=(), eps=suite.HEADLINE_EPS, study=None):
    """A catalogue Defense (or a user's) and its model evaluated on the settings' fixed
    test images; transfer: examples crafted elsewhere for those images (label, eps,
    x_adv); study: the study's 20 images and their transfer examples (paper protocol).
    What evaluation.py runs per defense."""
    target = defense.target(model, settings.n_vote, settings.draws, ctx.seed)
    idx = attack_subset(len(data.y_test), settings.n_attack)
    fgsm_k = suite.fgsm_k_name(ctx.protocol)
    study_idx, study_transfer = study or (None, None)
    measured = core.evaluate(target, data, idx, transfer, settings, ctx.seed, fgsm_k, study_idx, study_transfer, eps)
    checks = sanity_checks(measured.rows, settings, target.missing_adaptive_views(), fgsm_k, eps)
    return EvaluationResult(defense.label, eps, target.describe(), target.judged_by,
                            tuple(Measurement.from_row(r) for r in measured.rows),
                            tuple(Check(*c) for c in checks), measured.images, measured.robust, ctx.protocol.name)


def evaluate(model, eps=suite.HEADLINE_EPS, *, filter=None, sigma=0.0, name=None, protocol="standard",
             quick=False, seed=None, data_dir=None, models_dir="models"):
    """Evaluate a Keras classifier of 28x28x1 images in [0, 1] with 10 logits: every
    attack of the suite with AutoAttack at L-inf eps, on the protocol's 1,000 fixed test
    images (500 if randomized; 50 with quick), the sanity checks included. filter: a
    filter put in front of it ("dual", "median3", ...); sigma > 0: the smoothed
    classifier around it, judged by PREDICT (a smoothing.Smooth, as load_defense gives
    a smoothed defense, brings its own). Transfer attacks come from the protocol's
    undefended CNN when models_dir holds it. Returns an EvaluationResult."""
    from fashion_defenses.defenses import catalogue, filters, smoothing
    from fashion_defenses.framework import keras
    if isinstance(model, smoothing.Smooth):
        model, sigma = model.base, model.sigma
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol must be one of {', '.join(sorted(PROTOCOLS))}, got {protocol!r}")
    if not eps > 0:
        raise UserError(f"eps must be > 0, got {eps}")
    config = PROTOCOLS[protocol]
    ctx = RunContext(config, config.seed if seed is None else seed, quick, data_dir, Path("results"), Path(models_dir))
    keras.utils.set_random_seed(ctx.seed)
    settings = core.SETTINGS["quick" if quick else protocol]
    data = load_data(config, data_dir, quick)
    label = name or getattr(model, "name", "model")
    defense = catalogue.Defense(label, "your model", label, train=None, filter=filter or "", sigma=sigma or 0.0)
    if filter:
        model = filters.with_filter(filters.make_filter(filter), model)
    return evaluate_target(ctx, settings, data, defense, model, transfer_for(ctx, settings, data, eps), eps)


def transfer_for(ctx, settings, data, eps):
    """The transfer examples every defense is tried on: crafted on the protocol's
    undefended CNN if it is cached, none otherwise."""
    from fashion_defenses.defenses import catalogue
    source = catalogue.load_defenses(ctx.models_dir, catalogue.catalogue(ctx, data)[:1])
    return transfer_from(source[0][1], ctx, settings, data, eps) if source else []


def transfer_from(source, ctx, settings, data, eps=suite.HEADLINE_EPS):
    """The protocol's FGSM-k and PGD-20 at eps, crafted on source for the settings'
    fixed test images, as (label, eps, x_adv)."""
    idx = attack_subset(len(data.y_test), settings.n_attack)
    return suite.transfer_examples(source, data.x_test[idx], data.y_test[idx], (eps,),
                                   suite.fgsm_k_name(ctx.protocol), ctx.seed)
