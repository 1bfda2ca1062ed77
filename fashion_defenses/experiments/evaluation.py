"""The evaluation stage (what evaluation.py runs): every defense of the catalogue, or a
user's model file, through evaluation.result.evaluate_target, the same attacks and
checks for all (one defense: experiments.evaluate_defense, a pipeline job); the long,
summary and checks tables, the study's Table 4 beside ours (paper protocol), the
figures, the per-image flags and the run record."""
import dataclasses
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from fashion_defenses.data import load_data
from fashion_defenses.defenses import certificates
from fashion_defenses.defenses.catalogue import catalogue, load_defenses
from fashion_defenses.errors import UserError
from fashion_defenses.evaluation.api import among_published, evaluate, leaderboard
from fashion_defenses.evaluation.checks import checks_markdown
from fashion_defenses.evaluation.core import SETTINGS
from fashion_defenses.evaluation.digest import write_digest
from fashion_defenses.evaluation.figures import draw_figures, plot_pareto
from fashion_defenses.evaluation.report import (
    mia_results,
    paper_table,
    published_records,
    summary_row,
    table4_note,
    write_summary,
)
from fashion_defenses.experiments.evaluate_defense import attack_sources, evaluate_one, load_source, pick_defenses
from fashion_defenses.framework import keras, library_versions
from fashion_defenses.models import model_path
from fashion_defenses.reporting import Progress, atomic_write_text, write_table


def git_state():
    """(commit, whether tracked code differs from it); taken when the run starts, since
    that is the code that produced the results. Changes under results/ are outputs, not
    code, and do not count."""
    root = Path(__file__).resolve().parents[2]   # the repository this package was run from
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)results"], capture_output=True, text=True, cwd=root).stdout.strip())
    except OSError:
        commit, dirty = "", None
    return commit, dirty


def run_record(ctx, settings, evaluated, seconds, git, defense_seconds):
    """What produced these results: commit, seed, versions, hardware, wall times (of
    the whole evaluation and of each defense's attacks)."""
    commit, dirty = git
    sidecars = {}
    for defense, _ in evaluated:
        path = model_path(ctx.models_dir, defense.name).with_suffix(".json")
        meta = json.loads(path.read_text()) if path.exists() else {}
        sidecars[defense.name] = {k: meta.get(k) for k in ("seed", "epochs_run", "train_seconds", "saved_at")}
    return {"protocol": ctx.protocol.name, "seed": ctx.seed, "quick": ctx.quick, "commit": commit,
            "uncommitted_changes": dirty, "settings": dataclasses.asdict(settings),
            "versions": library_versions(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "evaluation_wall_seconds": round(seconds, 1), "seconds_per_defense": defense_seconds,
            "models": sidecars,
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def load_user_model(path):
    """A Keras classifier of 28x28x1 images in [0, 1] with 10 outputs, as a model that
    outputs logits, and whether the file's model outputs logits or probabilities."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--model {path}: no such file")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 -- any file Keras cannot read is the user's to fix
        raise UserError(f"--model {path}: not a model Keras can load ({type(e).__name__})") from None
    inputs, outputs = tuple(getattr(model, "input_shape", ())[1:]), getattr(model, "output_shape", (None,))[-1]
    if inputs != (28, 28, 1) or outputs != 10:
        raise UserError(f"--model {path}: needs 28x28x1 inputs and 10 outputs, has {inputs} -> {outputs}")
    probe = np.asarray(model(np.random.default_rng(0).uniform(size=(16, 28, 28, 1)).astype(np.float32)))
    if probe.min() >= 0 and np.allclose(probe.sum(axis=1), 1, atol=1e-3):
        logits = keras.layers.Lambda(lambda p: keras.ops.log(p + 1e-12), name="log")
        return keras.Sequential([keras.Input((28, 28, 1)), model, logits], name=path.stem), "probabilities"
    return model, "logits"


def evaluate_user_model(ctx, path, sigma, filter_name):
    """A model file given on the command line, through fashion_defenses.evaluate; its
    tables and per-image flags go to <results>/your_models/, never over a run's."""
    model, outputs = load_user_model(path)
    label = f"{Path(path).name} ({outputs}" + (f", {filter_name} filter" if filter_name else "") + \
        (f", smoothed sigma {sigma:g}" if sigma else "") + ")"
    result = evaluate(model, filter=filter_name or None, sigma=sigma, name=label, protocol=ctx.protocol.name,
                      quick=ctx.quick, seed=ctx.seed, data_dir=ctx.data_dir, models_dir=ctx.models_dir)
    long_rows, check_row = table_rows(ctx, "your model", label, result)
    out = ctx.results_dir / "your_models" / f"evaluation_{Path(path).stem}"
    write_table(long_rows, out, title=f"{label}, evaluated like every defense of the {ctx.protocol.name} "
                f"protocol (seed {ctx.seed}; exact 95% intervals)")
    write_table([check_row], f"{out}_checks", title=f"Sanity checks (Carlini et al. 2019) of {path}",
                markdown_body=checks_markdown([check_row]))
    result.save(f"{out}_per_image.npz")
    entries = among_published(result, ctx.results_dir)
    write_table(leaderboard(result, ctx.results_dir), f"{out}_leaderboard",
                title=f"{label} among the {len(entries) - 1} published defenses of the {ctx.protocol.name} protocol "
                      f"(their records in {ctx.results_dir}), the most robust first: accuracy % [95% interval]")
    plot_pareto([(d, rows) for d, rows, _ in entries], f"Clean vs robust accuracy, {ctx.protocol.name} protocol: "
                f"{label} (star) among the published defenses", f"{out}_pareto.png")
    print(f"wrote {out}.csv, {out}.md, {out}_checks.md, {out}_per_image.npz, {out}_leaderboard.md, {out}_pareto.png")


def table_rows(ctx, kind, label, result, key=None):
    """An EvaluationResult as rows of the long table and one row of the checks table."""
    return record_rows(ctx, {"label": label, "kind": kind, "key": key or result.name, "rows": result.rows(),
                             "checks": [[c.name, c.passed, c.detail] for c in result.checks],
                             "attacked_through": result.attacked_through, "judged_by": result.judged_by})


def record_rows(ctx, record):
    """A defense's evaluation record as rows of the long table and one row of the checks table."""
    common = {"protocol": ctx.protocol.name, "defense": record["label"], "kind": record["kind"],
              "model": record["key"]}
    long_rows = [{**common, **r, "attacked_through": record["attacked_through"], "judged_by": record["judged_by"]}
                 for r in record["rows"]]
    checks = {name: f"{'pass' if passed else 'FAIL'} ({detail})" for name, passed, detail in record["checks"]}
    return long_rows, {**common, **checks}


def run_evaluation(ctx, train_missing=False, wanted=None, user_model=None, sigma=0.0, filter_name="", report=False):
    """Evaluate every defense of the protocol (those named in wanted; or the model file
    user_model) and write the tables, plots and run record. report: no attack, the
    tables of every defense whose record is written (the pipeline's report)."""
    protocol = ctx.protocol
    settings = SETTINGS["quick" if ctx.quick else protocol.name]
    if user_model:   # evaluate() loads the data and the transfer source itself
        evaluate_user_model(ctx, user_model, sigma, filter_name)
        return
    start, git = time.time(), git_state()
    data = load_data(protocol, ctx.data_dir, ctx.quick)
    every = catalogue(ctx, data)
    if report:   # the pipeline's report job: the digest across stages is the publish job's (tools/publish.py)
        write_report(ctx, settings, data, published_records(ctx.results_dir, protocol.name, every), "", start, git,
                     digest=False)
        return
    chosen = pick_defenses(every, wanted) if wanted else every
    defenses = load_defenses(ctx.models_dir, chosen, train_missing)
    sources = attack_sources(ctx, settings, data, load_source(ctx, every))
    progress = Progress(len(defenses), "evaluation", "defenses", every=0)
    records = []
    for defense, model in defenses:
        records.append((defense, evaluate_one(ctx, settings, data, defense, model, sources)))
        progress.update(len(records))
    write_report(ctx, settings, data, records, "_subset" if wanted else "", start, git)


def write_report(ctx, settings, data, records, suffix, start, git, digest=True):
    """The protocol's tables (long, checks, summary; the study's Table 4 beside ours in
    the paper protocol), figures and run record, from (defense, evaluation record)
    pairs; with digest, summary.md and the findings too."""
    protocol = ctx.protocol
    mia_rows = mia_results(ctx.results_dir, protocol.name)
    long_rows, check_rows, summary, evaluated = [], [], [], []
    for defense, record in records:
        defense_rows, check_row = record_rows(ctx, record)
        long_rows += defense_rows
        check_rows.append(check_row)
        summary.append(summary_row(defense, record["rows"], record["checks"], mia_rows, settings, ctx.results_dir))
        evaluated.append((defense, record["rows"]))
    out = ctx.results_dir / f"evaluation_{protocol.name}{suffix}"
    tag = f"{protocol.name} protocol, seed {ctx.seed}"
    write_table(long_rows, out, title=f"Uniform evaluation, {tag}: every measurement (exact 95% intervals)")
    write_table(check_rows, f"{out}_checks", title=f"Sanity checks (Carlini et al. 2019), {tag}",
                markdown_body=checks_markdown(check_rows))
    write_table(summary, f"{out}_summary",
                title=f"Every defense at a glance, {tag}: accuracy % [95% interval]; clean on "
                      f"{len(data.y_test)} test images, attacks on {settings.n_attack} fixed test images "
                      f"({settings.n_attack_randomized} of them for randomized defenses; smoothed classifiers "
                      f"judged by PREDICT, n {settings.n_vote:,}, alpha {certificates.PREDICT_ALPHA:g}; settings "
                      f"of each in {out.name}.csv); MIA from membership_inference.py")
    if protocol.name == "paper":
        table4 = paper_table(evaluated, mia_rows, ctx.results_dir, settings)
        write_table(table4, f"{out}_table4", note=table4_note(table4),
                    title=f"The study's Table 4 (its 20 images) beside ours, {tag}; ours in % with exact 95% "
                          "intervals")
    draw_figures(evaluated, settings.eps_grid, mia_rows, protocol.name, out)
    if digest:
        write_summary(ctx.results_dir)
        write_digest(ctx.results_dir)
    seconds = {record["key"]: record["seconds"] for _, record in records}
    run = run_record(ctx, settings, evaluated, time.time() - start, git, seconds)
    atomic_write_text(f"{out}_run.json", json.dumps(run, indent=2, default=str) + "\n")
    print(f"wrote {out}.csv, {out}_summary.md, {out}_checks.md, plots, {ctx.results_dir / 'summary.md'} "
          f"({time.time() - start:.0f} s)")
