"""The model zoo: every defended model of the study's full run, published in git as
zoo/<protocol>/<name>.keras (the weights and architecture, no optimizer state) with
its JSON sidecar, so that a later job of the pipeline, or a user, loads the exact
model behind a published figure without training anything. A zoo folder has the
layout of a models/ cache, so any script reads it with --models-dir.

Also the study's trainings: one per trained model (a run that saves snapshots
publishes those too), which the pipeline runs as one job each (train.py)."""
import dataclasses
import os
from pathlib import Path

from fashion_defenses.defenses.catalogue import catalogue
from fashion_defenses.errors import UserError
from fashion_defenses.framework import keras
from fashion_defenses.models import model_path
from fashion_defenses.reporting import atomic_write_text

ZOO = Path(__file__).resolve().parent.parent / "zoo"


def zoo_dir(protocol_name, root=ZOO):
    return Path(root) / protocol_name


@dataclasses.dataclass(frozen=True)
class Training:
    """One training run: the model it trains, every model it saves (its snapshots
    too), the saved models it starts from, and train(retrain) that runs it."""
    name: str
    produces: tuple
    starts_from: tuple
    train: object


def trainings(ctx, data):
    """The protocol's training runs in catalogue order, by the name of the model each
    trains; defenses that share a trained model share its run."""
    runs = {}
    for defense in catalogue(ctx, data):
        name = defense.training_name
        if name not in runs:
            runs[name] = Training(name, defense.produces, defense.starts_from, defense.train)
    return runs


def find_training(ctx, text):
    """The run that makes `text`: a model it saves, or a defense's label or key."""
    runs = trainings(ctx, None)
    for defense in catalogue(ctx, None):
        if text in (defense.label, defense.key, defense.paper_row, *defense.produces):
            return runs[defense.training_name]
    raise UserError(f"no training makes {text!r}; the trainings (train.py --list): {', '.join(runs)}")


def publish(models_dir, name, zoo):
    """Copy a trained model from a models/ cache into the zoo without its optimizer
    state, with its sidecar; both written atomically. Returns the model's path."""
    source = model_path(models_dir, name)
    model = keras.models.load_model(source, compile=False, safe_mode=True)
    target = model_path(zoo, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, target)
    atomic_write_text(target.with_suffix(".json"), source.with_suffix(".json").read_text())
    return target


def restore(zoo, models_dir, name):
    """Put the zoo's model into a models/ cache (over what the cache held), so that a
    training that starts from it starts from the published model."""
    source = model_path(zoo, name)
    if not source.exists():
        raise UserError(f"{source} is not in the zoo: run its training first (train.py {name})")
    target = model_path(models_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".keras", ".json"):
        atomic_write_bytes(target.with_suffix(suffix), source.with_suffix(suffix).read_bytes())


def atomic_write_bytes(path, data):
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
