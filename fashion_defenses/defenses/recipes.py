"""The adversarial-training recipes: what each run trains (method, budget, epochs,
batch, filter, fine-tuning start) and the study's Table 4 rows, as plain data. No
TensorFlow here, so that a script's --help can show the defaults at once; the trainer
is in defenses/adversarial_training.py."""
import dataclasses
import math

METHODS = ("study", "fgsm", "fgsm-rs", "pgd", "trades")
METHOD_LABELS = {"study": "study AT", "fgsm": "FGSM AT", "fgsm-rs": "FGSM-RS AT", "pgd": "PGD AT",
                 "trades": "TRADES AT"}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One adversarial-training run."""
    method: str
    eps: float = 0.1
    epochs: int = 10
    batch_size: int = 128
    steps: int = 7                # PGD / TRADES inner steps
    clean_weight: float = 0.0     # fgsm/pgd: loss = w * clean + (1 - w) * adversarial
    beta: float = 6.0             # TRADES
    filter: str = ""              # input filter in front of the CNN ("" = none)
    init: str = ""                # fine-tune this saved model instead of training from scratch
    snapshots: tuple = ()         # also save the model after these epochs, as the shorter recipe's model

    def for_run(self, quick):
        """The recipe as a run trains it: under --quick a tenth of the epochs (at least one)."""
        if not quick:
            return self
        tenth = lambda epochs: math.ceil(epochs / 10)  # noqa: E731
        return dataclasses.replace(self, epochs=tenth(self.epochs), snapshots=tuple(map(tenth, self.snapshots)))

    def snapshot(self, epochs):
        """The recipe of this run's model after `epochs` epochs: the shorter run's."""
        return dataclasses.replace(self, epochs=epochs, snapshots=())

    def label(self):
        """What tables and legends call it: 'dual + PGD AT', 'study AT 25 ep b16'."""
        text = (f"{self.filter} + " if self.filter else "") + METHOD_LABELS[self.method]
        return text + (f" {self.epochs} ep b{self.batch_size}" if self.method == "study" else "")

    def name(self, architecture):
        """The model's name in models/: every setting that differs from the method's
        defaults is in it, so the cache never hands back another recipe's model."""
        parts = [architecture, self.filter, f"at-{self.method}"]
        if self.method == "study":
            parts.append(f"{self.epochs}ep-b{self.batch_size}")
        else:
            parts.append(f"eps{self.eps:g}")
            default = Recipe(self.method)
            parts += [f"{short}{getattr(self, field):g}" for field, short in RECIPE_NAME_PARTS
                      if getattr(self, field) != getattr(default, field)]
        if self.init:
            parts.append(f"from-{self.init}")
        return "_".join(p for p in parts if p)


RECIPE_NAME_PARTS = (("epochs", "ep"), ("batch_size", "b"), ("steps", "steps"), ("clean_weight", "clean"),
                     ("beta", "beta"))

# The study's adversarial training, as its code ran it: the raw CNN fine-tuned on its
# once-made images, one 50-epoch run at batch 16 (its 20- and 25-epoch models are that
# run after 20 and 25 epochs) and one 25-epoch run at batch 32.
PAPER_TRAINING = (Recipe("study", epochs=50, batch_size=16, snapshots=(20, 25)),
                  Recipe("study", epochs=25, batch_size=32))

PAPER_ROWS = {  # the study's Table 4 rows: key -> (the fine-tuned CNN's recipe, filter at prediction time)
    "adversarial training only (0.085, 20 ep, batch 16)": (Recipe("study", epochs=20, batch_size=16), ""),
    "dual median + AT (0.085, 20 ep, batch 16)": (Recipe("study", epochs=20, batch_size=16), "dual"),
    "dual median + AT (50 ep, batch 16)": (Recipe("study", epochs=50, batch_size=16), "dual"),
    "dual median + AT (25 ep, batch 16), the final pick": (Recipe("study", epochs=25, batch_size=16), "dual"),
    "dual median + AT (25 ep, batch 32)": (Recipe("study", epochs=25, batch_size=32), "dual"),
}


def paper_run(recipe, quick):
    """The study's fine-tuning run (of PAPER_TRAINING, as a run trains it) that makes
    a row's recipe: the run itself, or the longer one whose snapshot it is."""
    row = recipe.for_run(quick)
    for run in PAPER_TRAINING:
        run = run.for_run(quick)
        if row in [run.snapshot(epochs) for epochs in (run.epochs, *run.snapshots)]:
            return run
    raise ValueError(f"no run of the study makes {recipe}")


STANDARD_RECIPES = [Recipe("fgsm"), Recipe("fgsm-rs"), Recipe("pgd"), Recipe("trades"),
                    Recipe("pgd", filter="dual")]
