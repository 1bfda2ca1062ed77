"""The catalogue of every defense of a protocol, shared by the evaluation and
membership inference: what the tables call each one, which trained model it is, what
it puts in front of that model at prediction time, how its technique's stage trains
it, and how it is attacked and judged."""
import dataclasses

from fashion_defenses.defenses import adversarial_training as at
from fashion_defenses.defenses import certificates, filters, recipes, smoothing
from fashion_defenses.models import get_base_model, load_model, model_path


@dataclasses.dataclass(frozen=True)
class Defense:
    """One defense: a trained model (models/<name>.keras), a filter put in front of it
    at prediction time or the smoothed classifier around it, and the study's Table 4
    row it reproduces, if any."""
    label: str
    kind: str
    name: str                 # the trained model
    train: object             # (retrain=False) -> anything: trains and caches the model as its technique's stage does
    recipe: object = None     # (ctx, data) -> anything: the same training for another run context and data
    filter: str = ""          # a filter in front of the trained model at prediction time only
    sigma: float = 0.0        # > 0: the smoothed classifier around this noise-trained model
    paper_row: str = ""       # the study's Table 4 configuration it reproduces
    run: tuple = ()           # the models its training run saves, the one it trains first (default: name alone)
    starts_from: tuple = ()   # saved models that run fine-tunes

    @property
    def training_name(self):
        """The model its training run trains (a snapshot's: the longer run's)."""
        return self.produces[0]

    @property
    def produces(self):
        return self.run or (self.name,)

    @property
    def key(self):
        """What result files call it: the trained model, and the filter in front."""
        return f"{self.name}+{self.filter}" if self.filter else self.name

    def load(self, models_dir, train_missing=False):
        """The defended model (a Keras model; the base classifier of a smoothed one), or
        None when the trained model is not cached and train_missing is off."""
        return self._load(models_dir, self.train if train_missing else None)

    def load_reference(self, ctx, data):
        """The same defense trained by the same recipe on other data (a reference model
        for membership inference), cached in ctx.models_dir under the target's name."""
        return self._load(ctx.models_dir, lambda: self.recipe(ctx, data))

    def _load(self, models_dir, train):
        model, _ = load_model(models_dir, self.name)
        if model is None and train is not None:
            train()
            model, _ = load_model(models_dir, self.name)
        if model is not None and self.filter:
            model = filters.with_filter(filters.make_filter(self.filter), model)
        return model

    def target(self, model, n_vote, eot, seed):
        """How it is attacked and judged, as its own module defines it."""
        if self.sigma:
            return smoothing.smoothed_target(model, self.sigma, n_vote, eot, seed)
        return filters.target(model)


def _adversarial_training(ctx, data):
    """The protocol's adversarial-training defenses; the paper's are the study's rows."""
    arch = ctx.protocol.architecture
    if ctx.protocol.name == "paper":
        defenses = []
        for key, (row, filter_name) in recipes.PAPER_ROWS.items():
            recipe, run = row.for_run(ctx.quick), recipes.paper_run(row, ctx.quick)
            label = ("dual + " if filter_name else "") + recipe.label()
            defenses.append(Defense(label, "filter + adversarial training" if filter_name else "adversarial training",
                                    recipe.name(arch),
                                    lambda retrain=False, r=run: at.train_adversarially(ctx, r, data, retrain),
                                    lambda c, d, row=row: at.train_adversarially(c, recipes.paper_run(row, c.quick), d),
                                    filter=filter_name, paper_row=key,
                                    run=tuple(run.snapshot(e).name(arch) for e in (run.epochs, *run.snapshots)),
                                    starts_from=(arch,)))
        return defenses
    return [Defense(recipe.label(),
                    "filter + adversarial training" if recipe.filter else "adversarial training",
                    recipe.for_run(ctx.quick).name(arch),
                    lambda retrain=False, r=recipe: at.train_adversarially(ctx, r.for_run(ctx.quick), data, retrain),
                    lambda c, d, r=recipe: at.train_adversarially(c, r.for_run(c.quick), d))
            for recipe in recipes.STANDARD_RECIPES]


def catalogue(ctx, data):
    """Every defense of the protocol, in table order (a subset with --quick). In the
    paper protocol the dual filter sits in front of the trained CNN at prediction
    time, as in the study; in the standard protocol the CNN is trained behind it."""
    arch = ctx.protocol.architecture
    paper = ctx.protocol.name == "paper"
    base = lambda retrain=False: get_base_model(ctx, data, retrain)  # noqa: E731
    defenses = [Defense("undefended CNN", "undefended", arch, base, get_base_model)]
    if paper:
        defenses.append(Defense("dual filter (at prediction time)", "filter", arch, base,
                                get_base_model, filter="dual", paper_row="median filter only"))
    else:
        defenses += [Defense(f"{f} filter", "filter", filters.filter_model_name(ctx.protocol, f),
                             lambda retrain=False, f=f: filters.get_filter_model(ctx, f, data, retrain),
                             lambda c, d, f=f: filters.get_filter_model(c, f, d))
                     for f in filters.TRAINED_BEHIND]
    defenses += _adversarial_training(ctx, data)
    if not paper:
        defenses += [Defense(f"smoothing sigma {sigma:g}", "randomized smoothing",
                             certificates.noise_model_name(ctx.protocol, sigma),
                             lambda retrain=False, s=sigma: smoothing.get_noise_model(ctx, s, data, retrain),
                             lambda c, d, s=sigma: smoothing.get_noise_model(c, s, d), sigma=sigma)
                     for sigma in certificates.SIGMAS]
    if ctx.quick:
        keep = {"undefended CNN", "dual filter", "dual filter (at prediction time)", "PGD AT", "smoothing sigma 0.25"}
        defenses = [d for d in defenses if d.label in keep or d.paper_row.endswith("the final pick")]
    return defenses


def load_defenses(models_dir, defenses, train_missing=False):
    """(defense, model) for each defense whose model is cached; trained first with
    train_missing, otherwise reported and skipped."""
    found = []
    for defense in defenses:
        model = defense.load(models_dir, train_missing)
        if model is None:
            print(f"  skipped {defense.label}: no {model_path(models_dir, defense.name)} "
                  "(run its script, or evaluation.py with --train-missing)")
            continue
        found.append((defense, model))
    return found
