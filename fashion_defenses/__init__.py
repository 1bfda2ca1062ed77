"""Defenses against adversarial examples and membership inference on Fashion-MNIST,
evaluated the way the reference code runs its attacks.

    from fashion_defenses import evaluate, load_defense
    result = evaluate(model, eps=0.1)       # any Keras classifier of 28x28x1 images in [0, 1]
    result = evaluate(load_defense("PGD AT"))   # a published defense of the model zoo

Packages by concern: attacks/ (gradient attacks, AutoAttack's attacks, the named suite
and its outcome store), defenses/ (filters, adversarial training, randomized smoothing,
the catalogue), privacy/ (membership inference), evaluation/ (one defense evaluated,
its checks, tables and figures) and experiments/ (the study's stages, one per script).
Importing the package loads no TensorFlow; `evaluate` and `load_defense` do, when
first used."""

__all__ = ["evaluate", "EvaluationResult", "load_defense"]


def __getattr__(name):
    if name in ("evaluate", "EvaluationResult"):
        from fashion_defenses.evaluation import api
        return getattr(api, name)
    if name == "load_defense":
        from fashion_defenses import published
        return published.load_defense
    raise AttributeError(f"module 'fashion_defenses' has no attribute {name!r}")
