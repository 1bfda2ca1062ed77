"""One defense evaluated: every attack of its plan on the fixed images (and the
study's 20), at the settings of a protocol."""
import dataclasses

import numpy as np

from fashion_defenses.attacks import suite
from fashion_defenses.attacks.outcome_store import model_fingerprint
from fashion_defenses.data import STUDY_EPS
from fashion_defenses.defenses import certificates
from fashion_defenses.reporting import accuracy_ci


@dataclasses.dataclass(frozen=True)
class Settings:
    """How hard every defense of a run is attacked: the same for all of them."""
    n_attack: int            # fixed, seeded test images every attack runs on
    n_attack_randomized: int  # the first of them, against a randomized defense (20 draws per gradient)
    eps_grid: tuple          # L-inf budgets of FGSM and PGD-20 (the accuracy-vs-eps curve)
    l2_radii: tuple          # L2 PGD-20 budgets, set beside the certified accuracy
    draws: int               # noise draws per gradient when attacking a smoothed classifier
    n_vote: int              # noise draws behind each PREDICT of a smoothed classifier (alpha 0.001)


SETTINGS = {
    # randomized defenses: the 500 images certified_robustness.py certifies (a 20-draw EOT
    # gradient costs 20 plain ones)
    "standard": Settings(1000, suite.N_ATTACK_RANDOMIZED, (0.02, 0.05, STUDY_EPS, 0.1, 0.15), (0.5, 1.0),
                         draws=suite.EOT_DRAWS, n_vote=certificates.PREDICT_N),
    "paper": Settings(1000, suite.N_ATTACK_RANDOMIZED, (STUDY_EPS, 0.1), (), draws=suite.EOT_DRAWS,
                      n_vote=certificates.PREDICT_N),
    "quick": Settings(50, 50, (STUDY_EPS, 0.1), (0.5,), draws=2, n_vote=20),
}


@dataclasses.dataclass(frozen=True)
class Measured:
    """What evaluating one defense measured: its rows (attack, norm, eps, images,
    settings, n, acc, ci_low, ci_high), and per image of the fixed set it was attacked
    on (images: test-set indices), whether each attack at each budget left it
    classified right (robust[(attack, eps)])."""
    rows: list
    images: np.ndarray
    robust: dict


def _row(attack, budget, images, correct, settings_text="", norm="linf"):
    return {"attack": attack, "norm": norm, "eps": round(float(budget), 4), "images": images,
            "settings": settings_text, **accuracy_ci(correct)}


def clean_rows(target, data, seed):
    """Clean accuracy on the test set and on the first 10,000 training images, the two
    rows every evaluation starts with. For a smoothed classifier (PREDICT at n = 1,000
    on 20,000 images) they are most of the work, which a pipeline job computes apart
    (evaluate_defense.py --only-clean)."""
    suite.reseed(("evaluate", model_fingerprint(target.model), target.judged_by, seed))   # a randomized judge
    n_train = min(len(data.y_train), 10000)
    return [_row("clean", 0, "test set", target.judge(data.x_test, data.y_test), norm="-"),
            _row("clean (train)", 0, f"first {n_train} training",
                 target.judge(data.x_train[:n_train], data.y_train[:n_train]), norm="-")]


def evaluate(target, data, idx, transfer, settings, seed, fgsm_k="FGSM-k", study_idx=None, study_transfer=None,
             eps=suite.HEADLINE_EPS, clean=None):
    """Every measurement of one defense: clean accuracy on the test set and on training
    images (clean_rows; clean: those rows measured before), suite.measure on the fixed
    test images idx with AutoAttack at eps (transfer: examples crafted on the undefended
    CNN for them; a randomized defense is attacked on the first
    settings.n_attack_randomized of them), and the study's 20 images where given. The
    random streams are seeded apart for the clean rows and for the rest, so that the
    rows are the same whether the clean ones were measured here or before. Returns a
    Measured."""
    if target.randomized:
        idx, transfer = suite.randomized_images(idx, transfer, len(data.y_test), settings.n_attack_randomized)
    x, y = data.x_test[idx], data.y_test[idx]
    rows = list(clean) if clean is not None else clean_rows(target, data, seed)
    suite.reseed(("evaluate attacks", model_fingerprint(target.model), target.judged_by, seed))
    if study_idx is not None:  # the study's own 20 images, drawn with replacement
        xs, ys = data.x_test[study_idx], data.y_test[study_idx]
        attack = suite.SUITE[fgsm_k]
        rows.append(_row("benign", 0, "study's 20", target.judge(xs, ys), norm="-"))
        rows.append(_row(f"{fgsm_k} transfer", STUDY_EPS, "study's 20", target.judge(study_transfer, ys),
                         "crafted on the undefended CNN"))
        rows.append(_row(fgsm_k, STUDY_EPS, "study's 20", target.outcome(attack, xs, ys, STUDY_EPS, seed),
                         attack.describe()))
    plan = suite.Plan(settings.eps_grid, settings.l2_radii, fgsm_k, headline_eps=eps)
    measured, robust = suite.measure(target, x, y, plan, seed, transfer, clean_label="benign")
    rows += [{**r, "images": f"{len(y)} fixed"} for r in measured]
    return Measured(rows, idx, robust)
