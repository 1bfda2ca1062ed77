"""One defense of the catalogue evaluated (what evaluate_defense.py runs, one pipeline
job per defense): every attack of the suite and the checks through
evaluation.result.evaluate_target, its record and per-image flags written to
<results>/per_image/evaluation_<protocol>/, the input of evaluation.py's tables. It
uses none of the tables' code, so a change of layout reruns no attack. A smoothed
classifier's clean rows (PREDICT on 20,000 images) are a job of their own: written
beside the record (.clean.json) and read back by its evaluation."""
import json
import time

from fashion_defenses.attacks import suite
from fashion_defenses.data import STUDY_EPS, attack_subset, load_data, study_sample
from fashion_defenses.defenses.catalogue import catalogue, load_defenses
from fashion_defenses.errors import UserError
from fashion_defenses.evaluation.core import SETTINGS
from fashion_defenses.evaluation.result import clean_accuracy, evaluate_target, record_path, transfer_from
from fashion_defenses.reporting import atomic_write_text, format_acc


def attack_sources(ctx, settings, data, source):
    """What every defense is also tried with, crafted on source (the undefended CNN;
    None: nothing): the transfer examples of the fixed images and, in the paper
    protocol, the study's own 20 images (drawn with replacement) and theirs."""
    if source is None:
        return [], None
    idx = attack_subset(len(data.y_test), settings.n_attack)
    print(f"crafting transfer attacks on the undefended {ctx.protocol.architecture} ({len(idx)} images)")
    transfer = transfer_from(source, ctx, settings, data)
    if ctx.protocol.name != "paper":
        return transfer, None
    study_idx = study_sample(len(data.y_test), ctx.seed)
    fgsm_k = suite.fgsm_k_name(ctx.protocol)
    return transfer, (study_idx, suite.SUITE[fgsm_k].run(source, data.x_test[study_idx], data.y_test[study_idx],
                                                         STUDY_EPS, ctx.seed))


def evaluate_one(ctx, settings, data, defense, model, sources, clean=None):
    """One defense through evaluate_target (clean: its clean rows as read_clean returns
    them, else measured here); its per-image flags and its record (every row, check and
    how it was attacked and judged) written beside each other, the report's input.
    Returns the record."""
    t0 = time.time()
    print(f"evaluating {defense.label} ({defense.key})" + (", its clean rows read" if clean else ""))
    transfer, study = sources
    result = evaluate_target(ctx, settings, data, defense, model, transfer, study=study, clean=clean)
    path = record_path(ctx.results_dir, ctx.protocol.name, defense.key)
    result.save(path.with_suffix(".npz"))
    seconds = round(time.time() - t0, 1)
    record = {"label": defense.label, "key": defense.key, "kind": defense.kind, "rows": result.rows(),
              "checks": [[c.name, c.passed, c.detail] for c in result.checks],
              "attacked_through": result.attacked_through, "judged_by": result.judged_by, "seconds": seconds}
    atomic_write_text(path, json.dumps(record, indent=1, default=str) + "\n")
    failed = [c.name for c in result.checks if not c.passed]
    print(f"  attacked through {result.attacked_through}; sanity: "
          f"{'FLAGGED ' + '; '.join(failed) if failed else 'ok'} ({seconds:.0f} s)")
    return record


def pick_defenses(defenses, wanted, flag="--defenses"):
    """The catalogue's defenses named in wanted (labels or model keys), in its order."""
    names = {d.label for d in defenses} | {d.key for d in defenses}
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise UserError(f"{flag}: unknown {', '.join(map(repr, unknown))}; the protocol's defenses are: "
                        + ", ".join(d.label for d in defenses))
    return [d for d in defenses if d.label in wanted or d.key in wanted]


def load_source(ctx, every):
    """The protocol's undefended CNN, the transfer attacks' source; a clear error when
    it is not in the models folder."""
    source = load_defenses(ctx.models_dir, every[:1])
    if not source:
        raise UserError(f"no undefended {ctx.protocol.architecture} in {ctx.models_dir}: run model.py "
                        f"--protocol {ctx.protocol.name} first, or evaluation.py with --train-missing")
    return source[0][1]


def clean_path(results_dir, protocol_name, key):
    """Where a defense's clean rows measured apart go: beside its record."""
    return record_path(results_dir, protocol_name, key).with_suffix(".clean.json")


def read_clean(path, defense):
    """(rows, what they were measured on) as run_clean_job wrote them for defense."""
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no clean rows at {path}: run evaluate_defense.py --only-clean first") from None
    except ValueError:
        raise UserError(f"{path} is not a file of clean rows (evaluate_defense.py --only-clean writes one)") from None
    if saved.get("key") != defense.key:
        raise UserError(f"{path} holds the clean rows of {saved.get('label')!r}, not of {defense.label!r}")
    return saved["rows"], saved["measured_on"]


def _defense_and_model(ctx, wanted):
    settings = SETTINGS["quick" if ctx.quick else ctx.protocol.name]
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    every = catalogue(ctx, data)
    [defense] = pick_defenses(every, [wanted], "defense")
    model = defense.load(ctx.models_dir, False)
    if model is None:
        raise UserError(f"no model of {defense.label} in {ctx.models_dir}: train it first (train.py {defense.name})")
    return settings, data, every, defense, model


def run_clean_job(ctx, wanted):
    """The clean rows of the defense named wanted, alone, into clean_path."""
    settings, data, _, defense, model = _defense_and_model(ctx, wanted)
    t0 = time.time()
    print(f"measuring the clean accuracy of {defense.label} ({defense.key})")
    rows, measured_on = clean_accuracy(ctx, settings, data, defense, model)
    path = clean_path(ctx.results_dir, ctx.protocol.name, defense.key)
    seconds = round(time.time() - t0, 1)
    atomic_write_text(path, json.dumps({"label": defense.label, "key": defense.key, "rows": rows,
                                        "measured_on": measured_on, "seconds": seconds}, indent=1) + "\n")
    for r in rows:
        print(f"  {r['attack']} ({r['images']}): {format_acc(r)}")
    print(f"wrote {path} ({seconds:.0f} s)")


def run_defense_job(ctx, wanted, clean_file=None):
    """The defense named wanted (label or model key), evaluated into its record; its
    clean rows read from clean_file where given (run_clean_job's)."""
    settings, data, every, defense, model = _defense_and_model(ctx, wanted)
    clean = None if clean_file is None else read_clean(clean_file, defense)
    evaluate_one(ctx, settings, data, defense, model, attack_sources(ctx, settings, data, load_source(ctx, every)),
                 clean)
