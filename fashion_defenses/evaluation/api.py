"""Evaluate any Keras classifier from Python, as evaluation.py evaluates every defense,
and place it among the published defenses:

    from fashion_defenses import evaluate
    from fashion_defenses.evaluation.api import leaderboard
    result = evaluate(model, eps=0.1)
    print(result.autoattack, result.worst_case, result.passed)
    leaderboard(result)          # its summary row among those of results/, most robust first

The result is typed (EvaluationResult, evaluation.result): every attack's robust
accuracy with its exact 95% interval, the AutoAttack and worst-case figures, the sanity
checks, and per image of the attacked set which attack at which budget broke it."""
from pathlib import Path

from fashion_defenses.attacks import suite
from fashion_defenses.context import RunContext
from fashion_defenses.data import PROTOCOLS, load_data
from fashion_defenses.errors import UserError
from fashion_defenses.evaluation import core, report
from fashion_defenses.evaluation.result import EvaluationResult, evaluate_target, transfer_from

__all__ = ["evaluate", "leaderboard", "among_published", "EvaluationResult"]


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


def among_published(result, results_dir="results"):
    """(defense, rows, checks) of every defense whose evaluation results_dir holds (the
    run's committed records), then the result's own as "your model"."""
    from fashion_defenses.defenses import catalogue
    config = PROTOCOLS[result.protocol]
    ctx = RunContext(config, config.seed, False, None, Path(results_dir), Path("models"))
    published = report.published_records(results_dir, result.protocol, catalogue.catalogue(ctx, None))
    mine = catalogue.Defense(result.name, "your model", result.name, train=None)
    return [(d, r["rows"], r["checks"]) for d, r in published] + \
        [(mine, result.rows(), [(c.name, c.passed, c.detail) for c in result.checks])]


def leaderboard(result, results_dir="results"):
    """The headline's summary row of an EvaluationResult among those of the published
    defenses in results_dir, the most robust first."""
    return report.leaderboard(among_published(result, results_dir), report.mia_results(results_dir, result.protocol),
                              core.SETTINGS[result.protocol], results_dir)
