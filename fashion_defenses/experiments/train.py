"""One training of the study's full run, published in the model zoo (what train.py
runs): the pipeline's training job, and a user's way to one defense's model."""
from fashion_defenses import zoo
from fashion_defenses.data import load_data


def list_trainings(ctx):
    """Each training run: the model it trains, the others it saves, what it starts from."""
    for run in zoo.trainings(ctx, None).values():
        extra = [f"also saves {', '.join(run.produces[1:])}"] if len(run.produces) > 1 else []
        extra += [f"fine-tunes {', '.join(run.starts_from)}"] if run.starts_from else []
        print(run.name + (f"  ({'; '.join(extra)})" if extra else ""))


def run_training(ctx, name, zoo_folder, retrain):
    """Train the run that makes `name` (a model, or a defense's label or key) into
    ctx.models_dir, resuming an interrupted attempt, starting from the zoo's models
    where it fine-tunes one; then publish every model it saves into zoo_folder."""
    name = zoo.find_training(ctx, name).name         # one clear line on a name that is not the study's
    run = zoo.trainings(ctx, load_data(ctx.protocol, ctx.data_dir, ctx.quick))[name]
    for needed in run.starts_from:
        zoo.restore(zoo_folder, ctx.models_dir, needed)
        print(f"starts from the published {needed} ({zoo_folder})")
    run.train(retrain)
    for produced in run.produces:
        print(f"published {zoo.publish(ctx.models_dir, produced, zoo_folder)}")
