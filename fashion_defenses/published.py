"""The published defenses: a model of the zoo (zoo.py) loaded by the label the tables
give it, as its defense deploys it, so that a user attacks the exact model behind a
published figure without training anything.

    from fashion_defenses import load_defense, evaluate
    model = load_defense("PGD AT")              # protocol="paper" for the study's
    result = evaluate(model, quick=True)
"""
from pathlib import Path

from fashion_defenses.context import RunContext
from fashion_defenses.data import PROTOCOLS
from fashion_defenses.defenses import smoothing
from fashion_defenses.defenses.catalogue import catalogue
from fashion_defenses.errors import UserError
from fashion_defenses.models import model_path
from fashion_defenses.zoo import ZOO, zoo_dir


def load_defense(name, protocol="standard", zoo=ZOO, quick=False):
    """A published defense by its tables' label ("PGD AT") or model key: the Keras model
    with its filter in front, or for randomized smoothing the smoothed classifier
    (smoothing.Smooth around the noise-trained CNN; evaluate() takes either). quick:
    from a zoo of --quick trainings (their recipes' names)."""
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol must be one of {', '.join(sorted(PROTOCOLS))}, got {protocol!r}")
    config = PROTOCOLS[protocol]
    folder = zoo_dir(protocol, zoo)
    ctx = RunContext(config, config.seed, quick, None, Path("results"), folder)
    defenses = catalogue(ctx, None)   # no training here: the closures never run
    match = [d for d in defenses if name in (d.label, d.key)]
    if not match:
        raise UserError(f"no defense {name!r} in the {protocol} protocol; its defenses: "
                        f"{', '.join(d.label for d in defenses)}")
    defense = match[0]
    model = defense.load(folder)
    if model is None:
        raise UserError(f"{model_path(folder, defense.name)} is not published yet: its training job has not run")
    return smoothing.Smooth(model, defense.sigma) if defense.sigma else model

