"""The attack suite: every attack the repository runs, each name defined once with all
its settings (gradient.py and autoattack.py hold the methods), how a defense is attacked
(its views) and judged, AutoAttack, the per-image worst case, and the examples crafted
on one model to transfer to others."""
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from fashion_defenses.attacks import autoattack
from fashion_defenses.attacks import gradient as gradient_attacks
from fashion_defenses.attacks.gradient import LOSSES
from fashion_defenses.attacks.outcome_store import OutcomeStore, array_fingerprint, model_fingerprint
from fashion_defenses.data import STUDY_EPS, attack_subset
from fashion_defenses.framework import keras
from fashion_defenses.models import nested_layers, predict_labels
from fashion_defenses.reporting import accuracy_ci, format_acc

HEADLINE_EPS = 0.1       # the L-inf budget of every headline robust accuracy

OUTCOMES = OutcomeStore()   # where Target.outcome remembers its results; off until a script turns it on


def remember_outcomes(folder):
    """Store every per-image outcome under folder (results/.outcomes in a run), and
    reuse what is there: a restarted stage redoes only what it had not finished."""
    OUTCOMES.folder = Path(folder)


METHODS = {"pgd": gradient_attacks.pgd, "fgsm_k": gradient_attacks.fgsm_k, "apgd": autoattack.apgd,
           "apgd_targeted": autoattack.apgd_targeted, "fab_targeted": autoattack.fab_targeted,
           "square": autoattack.square}

EOT_METHODS = ("pgd", "apgd", "apgd_targeted", "fgsm_k")   # the methods that average gradients over draws

UNSEEDED_METHODS = ("fgsm_k", "fab_targeted")              # the methods that draw nothing at random


@dataclasses.dataclass(frozen=True)
class Attack:
    """One named attack and every setting it runs with. "step" is a multiple of the
    budget eps (2.5 * eps / steps, Madry et al.). through says what it attacks: the
    defense's white-box views ("views"), the randomized model itself with EOT over its
    draws ("randomized model", AutoAttack's rand version), or the deployed defense's
    outputs only ("outputs", a gradient-free attack)."""
    name: str
    method: str
    settings: tuple = ()
    through: str = "views"

    def options(self, eps):
        options = dict(self.settings)
        if "step" in options:
            options["step_size"] = options.pop("step") * eps
        return options

    def describe(self, eps=None):
        """The settings in words, step sizes in pixels at eps."""
        options = dict(self.settings)
        words = []
        if self.method == "pgd":
            steps, step = options["steps"], options["step"]
            words.append(f"{steps} step{'s' * (steps > 1)} of {step:g} eps" +
                         (f" = {step * eps:.4g}" if eps else ""))
            words.append("random start" if options.get("random_start", True) else "from the clean image")
        elif self.method == "fgsm_k":
            words.append("steps of 8/255 within 20/255 until misclassified at >= 0.8 confidence, max 100, "
                         "1/255 grid")
        elif self.method == "apgd":
            words.append(f"{options['iterations']} iterations, 1 random start, step 2 eps halved at checkpoints, "
                         "momentum 0.75")
            if options.get("single_draw"):
                words.append("EOT over the randomized model's draws, success judged on single draws")
        elif self.method == "apgd_targeted":
            words.append(f"top {options['target_classes']} targets x {options['iterations']} iterations")
        elif self.method == "fab_targeted":
            words.append(f"top {options['target_classes']} targets x {options['iterations']} iterations, "
                         f"from the clean image, alpha_max {autoattack.FAB_ALPHA_MAX:g}, eta {autoattack.FAB_ETA:g}, "
                         f"beta {autoattack.FAB_BETA:g}, minimal L-inf perturbation counted within eps")
        elif self.method == "square":
            words.append(f"{options['queries']} queries, p_init {options['p_init']}, p halved after iterations "
                         f"{', '.join(map(str, autoattack.SQUARE_HALVINGS))} (not rescaled)")
        loss = options.get("loss", "dlr_targeted" if self.method == "apgd_targeted" else
                           "margin" if self.method in ("square", "fab_targeted") else "ce")
        words.append(LOSSES[loss].split(" (")[0])
        if options.get("norm") == "l2":
            words.append("L2")
        return ", ".join(words)

    def run(self, model, x, y, eps, seed, eot_samples=1):
        options = self.options(eps)
        if self.method in EOT_METHODS:
            options["eot_samples"] = eot_samples
        if self.method not in UNSEEDED_METHODS:
            options["seed"] = seed
        return METHODS[self.method](model, x, y, eps=eps, **options)


SUITE = {attack.name: attack for attack in (
    Attack("FGSM", "pgd", (("steps", 1), ("step", 1.0), ("random_start", False))),
    Attack("FGSM-k", "fgsm_k", (("loss", "ce"),)),                    # run at 20/255, the study's budget
    Attack("FGSM-k (study's loss)", "fgsm_k", (("loss", "study"),)),
    Attack("PGD-10", "pgd", (("steps", 10), ("step", 0.25))),
    Attack("PGD-20", "pgd", (("steps", 20), ("step", 0.125))),
    Attack("unbounded PGD-20", "pgd", (("steps", 20), ("step", 0.125), ("random_start", False))),  # run at eps 1
    Attack("L2 PGD-20", "pgd", (("norm", "l2"), ("steps", 20), ("step", 0.125))),
    Attack("APGD-CE", "apgd", (("iterations", 100), ("loss", "ce"))),
    Attack("APGD-DLR", "apgd", (("iterations", 100), ("loss", "dlr"))),
    Attack("APGD-T", "apgd_targeted", (("target_classes", 9), ("iterations", 100))),
    Attack("FAB-T", "fab_targeted", (("target_classes", 9), ("iterations", 100))),
    Attack("Square", "square", (("queries", 5000), ("p_init", 0.8)), through="outputs"),
    Attack("APGD-CE (rand version)", "apgd", (("iterations", 100), ("loss", "ce"), ("single_draw", True)),
           through="randomized model"),
    Attack("APGD-DLR (rand version)", "apgd", (("iterations", 100), ("loss", "dlr"), ("single_draw", True)),
           through="randomized model"),
)}

# Croce & Hein's AutoAttack, version by version (attacks/autoattack.py's set_version): each attack
# runs on the images the ones before left standing. The standard version for a
# deterministic defense; the rand version (eot_iter 20) for a randomized one.
AUTOATTACK = ("APGD-CE", "APGD-T", "FAB-T", "Square")

AUTOATTACK_RAND = ("APGD-CE (rand version)", "APGD-DLR (rand version)")

EOT_DRAWS = 20                              # draws per gradient against a randomized defense (their eot_iter)
N_ATTACK_RANDOMIZED = 500                   # fixed images a randomized defense is attacked on (the first 500)

# Ours, beside the rand version where a defense's white-box view is not the randomized
# model itself (a smoothed classifier: the soft smoothed classifier, SmoothAdv's objective)
SOFT_APGD = ("APGD-CE", "APGD-DLR")

SOFT_APGD_LABEL = "soft-smoothed APGD"

AUTOATTACK_RAND_LABEL = "AutoAttack (rand version)"   # the row of a randomized defense's AutoAttack figure


def reseed(parts):
    """Seed every global random stream (the noise a randomized defense draws through
    TensorFlow's global generator) from what is measured, so that an outcome is the same
    whatever ran before it in the process: a stage resumed after a kill measures what an
    uninterrupted one does."""
    digest = hashlib.sha1(json.dumps(parts, default=str).encode()).digest()
    keras.utils.set_random_seed(int.from_bytes(digest[:4], "little") % 2 ** 31)


def fgsm_k_name(protocol):
    """The FGSM-k a protocol runs: the study's loss in the paper protocol."""
    return "FGSM-k (study's loss)" if protocol.fgsm_k_loss == "study" else "FGSM-k"


@dataclasses.dataclass(frozen=True)
class Target:
    """A defense as the attacker and the judge see it. judge(x, y) says which images
    the defense classifies right; views are what a white-box attacker differentiates,
    as (label, model, EOT draws); model is the defense as deployed, which a
    gradient-free attack queries; judged_by says how the judge decides;
    randomized_views, for a randomized defense whose views are not its randomized model
    itself, that model with its EOT draws (what AutoAttack's rand version attacks; by
    default the views). Each defense builds its own (filters.target,
    certified_robustness.smoothed_target); a plain model is plain_target."""
    judge: object
    views: tuple
    model: object
    judged_by: str = "its prediction"
    randomized_views: tuple = ()

    @property
    def randomized(self):
        return any(getattr(layer, "randomized", False) for layer in nested_layers(self.model))

    def outcome(self, attack, x, y, eps, seed, only=None):
        """Per image, whether the defense still classifies it right after `attack`
        through every view it goes through (views_for). With
        `only`, just those images are attacked and the others count as not broken."""
        correct = np.ones(len(y), dtype=bool)
        todo = np.flatnonzero(only) if only is not None else np.arange(len(y))
        if not len(todo):
            return correct

        def measure():
            reseed(parts)
            for _, view, eot in self.views_for(attack):
                x_adv = attack.run(view, x[todo], y[todo], eps, seed, eot)
                correct[todo] &= self.judge(x_adv, y[todo])
            return correct
        parts = (model_fingerprint(self.model), self.describe(self.views_for(attack)), self.judged_by, attack,
                 round(eps, 6), seed, array_fingerprint(x, y, todo))
        return OUTCOMES.remember(parts, measure, lambda stored: len(stored) == len(y))

    def views_for(self, attack):
        """(label, model, EOT draws) of every view the attack goes through."""
        if attack.through == "outputs":
            return (("deployed", self.model, 1),)
        if attack.through == "randomized model":
            return self.randomized_views or self.views
        return self.views

    def describe(self, views=None):
        return " + ".join(label + (f", EOT-{eot}" if eot > 1 else "") for label, _, eot in views or self.views)

    def missing_adaptive_views(self):
        """What an adaptive attacker needs and the views lack: a BPDA view where a layer
        has no useful gradient, EOT where a layer is random. [] when nothing is missing."""
        layers = nested_layers(self.model)
        missing = []
        if any(getattr(layer, "differentiable", True) is False for layer in layers):
            if not any(all(getattr(layer, "bpda", False) for layer in nested_layers(view)
                           if getattr(layer, "differentiable", True) is False) for _, view, _ in self.views):
                missing.append("no BPDA view around a filter without a useful gradient")
        if self.randomized and not any(eot * getattr(view, "draws", 1) > 1 for _, view, eot in self.views):
            missing.append("no EOT over a randomized defense")
        return missing


def plain_target(model):
    """A deterministic model with a useful gradient: judged and attacked as it is."""
    return Target(lambda x, y: predict_labels(model, x) == y, (("autodiff", model, 1),), model)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which attacks a robustness measurement runs: FGSM and PGD-20 at each eps of
    eps_grid (the accuracy-vs-eps curve), the protocol's FGSM-k, AutoAttack at the
    headline eps, the unbounded check, and L2 PGD-20 at each of l2_radii."""
    eps_grid: tuple
    l2_radii: tuple = ()
    fgsm_k: str = "FGSM-k"
    autoattack: bool = True
    headline_eps: float = HEADLINE_EPS


def worst_case(outcomes, eps):
    """Per image: robust at eps only if clean-correct and no attack at a budget <= eps
    broke it. outcomes maps (attack, budget) to per-image correctness."""
    return np.logical_and.reduce([c for (label, budget), c in outcomes.items()
                                  if budget <= eps + 1e-9 and label != "worst case"])


def sequences(target):
    """The attack sequences of a defense's AutoAttack figures: (row label of the last
    step, names), each attack of a sequence run on the images the ones before left."""
    if not target.randomized:
        return (("AutoAttack", AUTOATTACK),)
    if target.randomized_views and target.randomized_views != target.views:
        return ((rand_version_label(target), AUTOATTACK_RAND), (SOFT_APGD_LABEL, SOFT_APGD))
    return ((rand_version_label(target), AUTOATTACK_RAND),)


def rand_version_label(target):
    """The rand version's row: the reference judges it by one noisy forward pass, so a
    defense judged otherwise (a smoothed classifier by PREDICT) says by what."""
    if target.judged_by == Target.judged_by:
        return AUTOATTACK_RAND_LABEL
    return f"{AUTOATTACK_RAND_LABEL}, judged by {target.judged_by}"


def measure(target, x, y, plan, seed, transfer=None, log=print, clean_label="clean"):
    """Every attack of the plan against one defense on the images x: rows (attack,
    norm, eps, settings, n, acc, ci_low, ci_high) and per-image outcomes {(attack,
    eps): correct}. transfer lists (label, eps, examples crafted elsewhere). The
    "worst case" rows (at each eps of the grid and the headline eps) are worst_case of
    the outcomes before them. Each row is logged as it is measured, with its time;
    clean_label names the row of the unattacked images (the evaluation's "benign")."""
    rows, outcomes, clock = [], {}, [time.time()]
    reseed(("clean", model_fingerprint(target.model), target.judged_by, seed, array_fingerprint(x, y)))

    def add(label, eps, correct, settings="", norm="linf"):
        outcomes[(label, round(float(eps), 4))] = correct
        rows.append({"attack": label, "norm": norm, "eps": round(float(eps), 4), "settings": settings,
                     **accuracy_ci(correct)})
        if log:
            log(f"  {label:>24} {norm:>4} eps={eps:.4f}: {format_acc(rows[-1])} ({time.time() - clock[0]:.0f} s)")
        clock[0] = time.time()
        return correct

    def run(name, eps, only=None, norm="linf"):
        attack = SUITE[name]
        add(name, eps, target.outcome(attack, x, y, eps, seed, only), attack.describe(eps), norm)

    clean = add(clean_label, 0, target.judge(x, y), norm="-")
    run(plan.fgsm_k, STUDY_EPS)
    for eps in plan.eps_grid:
        run("FGSM", eps)
        run("PGD-20", eps)
    for label, eps, x_adv in transfer or ():
        add(label, eps, target.judge(x_adv, y), "crafted on the undefended CNN")
    for last_label, names in sequences(target) if plan.autoattack else ():
        standing = clean.copy()
        for i, name in enumerate(names):
            standing = standing & target.outcome(SUITE[name], x, y, plan.headline_eps, seed, only=standing)
            label = last_label if i == len(names) - 1 else " + ".join(names[:i + 1])
            add(label, plan.headline_eps, standing.copy(), "; ".join(
                f"{n} through {target.describe(target.views_for(SUITE[n]))}: {SUITE[n].describe(plan.headline_eps)}"
                for n in names[:i + 1]) + "; each on the images the ones before left standing")
    for eps in sorted(set(plan.eps_grid) | {plan.headline_eps}):
        add("worst case", eps, worst_case(outcomes, eps),
            f"per image: clean and every attack above at a budget <= {eps:g}")
    run("unbounded PGD-20", 1.0)
    for radius in plan.l2_radii:
        run("L2 PGD-20", radius, norm="l2")
    return rows, outcomes


def crafted(attack, model, x, y, eps, seed, key=()):
    """The attack's examples on a model, from the store when a stage before made them
    (every technique stage and the evaluation transfer the same ones); key: what else
    decides them that the model's weights do not show (a wrapper's settings)."""
    parts = ("examples", model_fingerprint(model), *key, attack, round(eps, 6), seed, array_fingerprint(x, y))

    def make():
        reseed(parts)
        return attack.run(model, x, y, eps, seed)
    return OUTCOMES.remember(parts, make, lambda stored: stored.shape == x.shape)


def transfer_examples(source, x, y, eps_grid, fgsm_k, seed):
    """Examples crafted on `source` (the undefended CNN) to try on a defense, as
    (label, eps, x_adv): the protocol's FGSM-k and PGD-20 at each eps of the grid."""
    made = [(f"{fgsm_k} transfer", STUDY_EPS, crafted(SUITE[fgsm_k], source, x, y, STUDY_EPS, seed))]
    return made + [("PGD-20 transfer", eps, crafted(SUITE["PGD-20"], source, x, y, eps, seed)) for eps in eps_grid]


def randomized_images(idx, transfer, n_test, n):
    """The part of the fixed images idx (test-set indices) that a randomized defense is
    attacked on: those among the first n fixed ones (attack_subset(n_test, n), which
    idx holds whenever it is a larger attack_subset), with their transfer examples;
    an EOT gradient costs EOT_DRAWS plain ones. Returns (idx, transfer)."""
    if n >= len(idx):
        return idx, transfer
    keep = np.isin(idx, attack_subset(n_test, n))
    return idx[keep], [(label, eps, x_adv[keep]) for label, eps, x_adv in transfer]
