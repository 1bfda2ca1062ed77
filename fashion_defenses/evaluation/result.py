"""A defense evaluated (EvaluationResult: its measurements, checks and per-image
flags) and evaluate_target, which makes one: what an evaluation job computes, with
none of the tables' code (evaluation.report)."""
import dataclasses
from pathlib import Path

import numpy as np

from fashion_defenses.attacks import suite
from fashion_defenses.attacks.outcome_store import model_fingerprint
from fashion_defenses.data import attack_subset
from fashion_defenses.errors import UserError
from fashion_defenses.evaluation import core
from fashion_defenses.evaluation.checks import sanity_checks
from fashion_defenses.evaluation.rows import autoattack_row, find, fixed_images
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


def evaluate_target(ctx, settings, data, defense, model, transfer=(), eps=suite.HEADLINE_EPS, study=None,
                    clean=None):
    """A catalogue Defense (or a user's) and its model evaluated on the settings' fixed
    test images; transfer: examples crafted elsewhere for those images (label, eps,
    x_adv); study: the study's 20 images and their transfer examples (paper protocol);
    clean: what clean_accuracy returned for it before, (rows, identity). What
    evaluation.py runs per defense."""
    target = defense.target(model, settings.n_vote, settings.draws, ctx.seed)
    if clean is not None and clean[1] != clean_identity(ctx, target):
        raise UserError(f"the clean rows given for {defense.label} were measured on {clean[1]}, not on "
                        f"{clean_identity(ctx, target)}: measure them again")
    idx = attack_subset(len(data.y_test), settings.n_attack)
    fgsm_k = suite.fgsm_k_name(ctx.protocol)
    study_idx, study_transfer = study or (None, None)
    measured = core.evaluate(target, data, idx, transfer, settings, ctx.seed, fgsm_k, study_idx, study_transfer, eps,
                             None if clean is None else clean[0])
    checks = sanity_checks(measured.rows, settings, target.missing_adaptive_views(), fgsm_k, eps)
    return EvaluationResult(defense.label, eps, target.describe(), target.judged_by,
                            tuple(Measurement.from_row(r) for r in measured.rows),
                            tuple(Check(*c) for c in checks), measured.images, measured.robust, ctx.protocol.name)


def clean_accuracy(ctx, settings, data, defense, model):
    """The clean rows of evaluate_target (core.clean_rows) alone, and what they were
    measured on: the defense as judged (its model's fingerprint, the judge) and the
    seed, which evaluate_target's own must match for the rows to be its."""
    target = defense.target(model, settings.n_vote, settings.draws, ctx.seed)
    return core.clean_rows(target, data, ctx.seed), clean_identity(ctx, target)


def clean_identity(ctx, target):
    """What a defense's clean rows depend on (JSON-able): its deployed model's weights,
    its judge, the seed and the data (the quick subset or all)."""
    return {"model": model_fingerprint(target.model), "judged_by": target.judged_by, "seed": ctx.seed,
            "quick": bool(ctx.quick)}


def record_path(results_dir, protocol_name, key):
    """Where an evaluation job writes a defense's record (.json; its per-image flags
    beside it, .npz): the report's input."""
    return Path(results_dir) / "per_image" / f"evaluation_{protocol_name}" / f"{key.replace('+', '_')}.json"


def transfer_from(source, ctx, settings, data, eps=suite.HEADLINE_EPS):
    """The protocol's FGSM-k and PGD-20 at eps, crafted on source for the settings'
    fixed test images, as (label, eps, x_adv)."""
    idx = attack_subset(len(data.y_test), settings.n_attack)
    return suite.transfer_examples(source, data.x_test[idx], data.y_test[idx], (eps,),
                                   suite.fgsm_k_name(ctx.protocol), ctx.seed)
