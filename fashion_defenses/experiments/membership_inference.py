"""The membership-inference stage (what membership_inference.py runs), the way the
LiRA and RMIA papers run it: complementary pairs of models of each defense's recipe,
all of the target's size, each in turn the target of the other pairs (privacy/design.py). Attacks: RMIA
online and offline (Zarifzadeh et al. 2024; offline a tuned as privacy_meter tunes it),
RMIA in its paper's configuration with augmented queries, LiRA offline and online
(Carlini et al. 2022), the loss attack (Yeom et al. 2018; its ROC is that of Song et
al.'s confidence attack) and the study's 0.9999 rule. Every model's outputs on the
controlled and population images are saved once (results/mia/outputs/), so a model is
never needed again (experiments/membership_models.py): the pipeline trains each in its
own job and attacks from the files.
Writes AUC and TPR at 0.1% and 1% FPR with exact intervals for every target, their
spread over targets, each target's leakage against the undefended CNN's (paired
bootstrap) and the verdict that holds on every target."""
import dataclasses
import time

import numpy as np

from fashion_defenses.attacks import suite
from fashion_defenses.data import load_data
from fashion_defenses.defenses import filters
from fashion_defenses.defenses.catalogue import catalogue, load_defenses
from fashion_defenses.errors import UserError
from fashion_defenses.experiments import membership_models as mm
from fashion_defenses.models import get_base_model
from fashion_defenses.privacy import attacks as ma
from fashion_defenses.privacy import design as md
from fashion_defenses.privacy import report as mr
from fashion_defenses.reporting import Progress, write_table

ADVERSARIAL_QUERY_KINDS = ("undefended", "adversarial training", "filter + adversarial training")

# Each extra model costs one training of the recipe. The paper protocol's adversarial
# training (two fine-tuning runs of its slow CNN each) is matched only with --match-all;
# its rows say so and keep the threshold attacks.
UNMATCHED_BY_DEFAULT = {"paper": ("adversarial training", "filter + adversarial training")}


def adversarial_queries(model, x, y, seed):
    """Song et al.'s queries: the suite's PGD-10 at L-inf 0.1 through the defense's
    adaptive view (BPDA through a filter)."""
    view = filters.bpda_view(model) if filters.filter_layers(model) else model
    return suite.SUITE["PGD-10"].run(view, x, y, suite.HEADLINE_EPS, seed)


def describe_design(design, n_train):
    """The design in the tables' words."""
    return (f"{design.models} models of the recipe in complementary pairs, each on {n_train:,} images (the "
            f"target's size), each in turn the target, the other pairs its references; {design.m:,} + {design.m:,} "
            f"controlled images: the defense's own model trains on the first half, its complement on the second, "
            f"every other pair on a random half and the rest")


def attack_scores(design, outputs, target, with_references=True):
    """Every attack's score of the audited examples (higher = more likely a member) with
    model `target` of the recipe as the target and the others as its references.
    outputs: each model's model_outputs on the controlled images then the population
    images. Offline RMIA's a is tuned on the first reference, attacked with the
    references of the other pairs (privacy_meter's rule); with a single reference pair
    it keeps privacy_meter's default."""
    audited = design.audited_positions
    controlled = 2 * design.m
    on = lambda r, key, at: outputs[r][key][..., at]  # noqa: E731
    population = lambda r, key: outputs[r][key][..., controlled:]  # noqa: E731
    scores = {"study": on(target, "max_prob", audited), "loss": on(target, "log_p_true", audited)}
    refs = design.references(target)
    if not with_references or not refs:
        return scores, {}
    scaled = lambda r: on(r, "log_p_true", audited) - on(r, "log_p_rest", audited)  # noqa: E731
    inside, reference_scaled = design.inside[refs][:, audited], np.stack([scaled(r) for r in refs])
    scores["lira"] = ma.lira_offline(scaled(target), reference_scaled, inside)
    scores["lira-online"] = ma.lira_online(scaled(target), reference_scaled, inside)

    def rmia_inputs(model, references):
        n_population = outputs[model]["log_p_true"].shape[-1] - controlled
        return (on(model, "log_p_true", audited), np.stack([on(r, "log_p_true", audited) for r in references]),
                design.inside[references][:, audited], population(model, "log_p_true"),
                np.stack([population(r, "log_p_true") for r in references]),
                np.zeros((len(references), n_population), bool))

    a, how = ma.RMIA_OFFLINE_A, {"offline_a": ma.RMIA_OFFLINE_A,
                                 "offline_a_tuned_on": "default (no reference pair besides the tuning model's)"}
    paired, others = refs[0], [r for r in refs if r // 2 != refs[0] // 2]   # never its own complement
    if others:
        x_lp, ref_lp, ref_in, z_lp, z_ref_lp, z_in = rmia_inputs(paired, others)
        a, aucs = ma.tune_offline_a(x_lp, design.inside[paired, audited], ref_lp, ref_in, z_lp, z_ref_lp, z_in)
        how = {"offline_a": a, "offline_a_tuned_on": f"model {paired} (AUC {aucs[a]:.3f})"}
    inputs = rmia_inputs(target, refs)
    scores["rmia"] = ma.rmia(*inputs, online=True)
    scores["rmia-offline"] = ma.rmia(*inputs, online=False, a=a)
    scores["rmia-augmented"] = ma.rmia_augmented(
        on(target, "rmia_augmented_signal", audited), np.stack([on(r, "rmia_augmented_signal", audited) for r in refs]),
        population(target, "rmia_augmented_signal"), np.stack([population(r, "rmia_augmented_signal") for r in refs]))
    queries = outputs[target]["rmia_augmented_signal"].shape[0]
    return scores, {**how, "population": len(inputs[3]), "augmented_queries": queries}


@dataclasses.dataclass
class Experiment:
    """What every defense is attacked with: the membership design, the run's settings
    and the recipes' models (from their saved outputs alone with from_outputs)."""
    ctx: object
    data: object
    design: md.MembershipDesign
    match_all: bool
    adversarial: bool
    references_dir: object = None      # where models 1.. are cached (default: models_dir/references)
    from_outputs: bool = False

    def __post_init__(self):
        self.recipe_models = mm.RecipeModels(self.ctx, self.data, self.design, self.references_dir, self.from_outputs)

    def matched(self, defense):
        """(does it get the extra models, what its reference attacks' rows say)."""
        if self.design.models < 2:
            return False, "none (--models 1)"
        unmatched = UNMATCHED_BY_DEFAULT.get(self.ctx.protocol.name, ())
        if not self.match_all and (defense.kind in unmatched or defense.label in unmatched):
            return False, "not matched: the budget (one training of the recipe per extra model; --match-all)"
        return True, describe_design(self.design, len(self.data.y_train))

    def model_indices(self, defense):
        """The recipe's models in design order (the defense's own first); the own model
        alone when it is not matched."""
        return range(self.design.models) if self.matched(defense)[0] else range(1)

    def adversarial_outputs(self, model, defense):
        """The defense's own model's outputs on Song et al.'s adversarial queries of the
        audited images (threshold attacks only: zeros elsewhere, no population)."""
        x_c, y_c = mm.controlled_images(self.data, self.design)
        audited = self.design.audited_positions
        x = adversarial_queries(model, x_c[audited], y_c[audited].astype(np.int32), self.ctx.seed)
        found = mm.model_outputs(model, x, y_c[audited], defense.sigma, self.ctx.seed,
                                 queries=mm.AUGMENTATIONS[:1])   # the threshold attacks need the query itself only
        full = {k: np.zeros(v.shape[:-1] + (len(y_c),), v.dtype) for k, v in found.items()}
        for k, v in found.items():
            full[k][..., audited] = v
        return full

    def scores(self, defense, model):
        """For each target: every attack's scores on the audited examples, and how its
        offline RMIA was set."""
        if self.adversarial:
            return [attack_scores(self.design, [self.adversarial_outputs(model, defense)], 0, False)]
        outputs = [self.recipe_models.outputs(defense, model, r) for r in self.model_indices(defense)]
        return [attack_scores(self.design, outputs, t, len(outputs) > 1) for t in range(len(outputs))]


def attack_defense(experiment, defense, model):
    """Every attack on every target of one defense: table rows (a row without figures
    for a reference attack that had no references), score files written."""
    ctx, design = experiment.ctx, experiment.design
    references = experiment.matched(defense)[1]
    if experiment.adversarial:
        references = "none (adversarial queries: threshold attacks only)"
    queries = (f"PGD-10 at L-inf {suite.HEADLINE_EPS:g} ({suite.SUITE['PGD-10'].describe(suite.HEADLINE_EPS)})"
               if experiment.adversarial else "clean")
    attack_names = ("study", "loss") if experiment.adversarial else mr.ATTACKS
    fold = design.audited_fold
    rows = []
    for target, (scores, how) in enumerate(experiment.scores(defense, model)):
        is_member = design.inside[target, design.audited_positions]
        for attack in attack_names:
            row = {"protocol": ctx.protocol.name, "defense": defense.label, "model": defense.key, "attack": attack,
                   "target": target, "queries": queries,
                   "references": references if attack in mr.REFERENCE_ATTACKS else "none needed",
                   "configuration": configuration(attack, how),
                   "offline_a": how.get("offline_a", "") if attack == "rmia-offline" else "",
                   "offline_a_tuned_on": how.get("offline_a_tuned_on", "") if attack == "rmia-offline" else "",
                   "population": how.get("population", "") if attack.startswith("rmia") else ""}
            row.update(dict.fromkeys(mr.metric_columns(), ""))
            if attack in scores:
                score = np.asarray(scores[attack], np.float32)   # as saved
                decision = mr.decisions(attack, score, is_member, fold)
                path = mr.scores_path(ctx.results_dir, ctx.protocol.name, defense.key, attack, experiment.adversarial,
                                      target)
                mr.save_scores(path, score, is_member, decision)
                row.update(mr.mia_metrics(score, is_member, decision))
            rows.append(row)
        report(defense, target, [r for r in rows if r["target"] == target and r["auc"] != ""])
    return rows


def configuration(attack, how):
    """How an RMIA row was configured (the two configurations the tables compare)."""
    if attack == "rmia-augmented" and "augmented_queries" in how:
        k = how["augmented_queries"]
        queries = (f"{k} queries (flips x one-pixel shifts)" if k > 1 else
                   f"1 query (a smoothed classifier's, the mean over {mm.NOISY_QUERIES} noisy draws)")
        return ma.RMIA_PAPER.describe(queries)
    if attack in ("rmia", "rmia-offline"):
        return f"privacy_meter's defaults: softmax, gamma {ma.RMIA_GAMMA:g}, mean over references, one query"
    return ""


def report(defense, target, rows):
    low = mr.fpr_key(mr.LOW_FPRS[-1])
    for row in rows:
        print(f"  {defense.label:>30} target {target} {row['attack']:>12}: AUC {row['auc']:.3f} "
              f"[{row['auc_ci_low']:.3f}, {row['auc_ci_high']:.3f}], TPR at {low.replace('_fpr', '')} FPR "
              f"{row[f'tp_at_{low}']}/{row['n_members']} ({row[f'fp_at_{low}']} false positives)")


def write_tables(ctx, experiment, rows):
    """The protocol's tables: every target's rows, the defenses' own models with the
    spread over targets, each target's leakage against the undefended CNN's and the
    verdicts; the ROC plot of the defenses' own models."""
    design, adversarial = experiment.design, experiment.adversarial
    n, protocol = design.n, ctx.protocol.name
    stem = mr.table_stem(ctx.results_dir, protocol, adversarial)
    queries = "PGD-10 adversarial queries" if adversarial else "clean queries"
    allowed = ", ".join(f"{int(np.floor(f * n + 1e-9))} at {100 * f:g}%" for f in mr.LOW_FPRS)
    every = "every controlled image: " if n == design.m else "the study's sets: " if protocol == "paper" else ""
    setting = (f"{every}{n:,} members and {n:,} non-members of each target among the first {n:,} training and "
               f"{n:,} test images; {describe_design(design, len(experiment.data.y_train))}; seed {ctx.seed}")
    write_table(rows, f"{stem}_targets", title=f"Membership inference, {protocol} protocol, {queries}, every "
                f"target: {setting}", note="Target 0 is the defense's own model (the one every other table "
                "evaluates); targets 1.. are the other models of its recipe.")
    main = mr.over_targets(rows)
    write_table(main, stem, markdown_rows=mr.markdown_rows(main),
                title=f"Membership inference, {protocol} protocol, {queries}: the defenses' own models (target 0) "
                f"and the mean (range) over every target; {setting}",
                note=f"TPR at a fixed FPR: members found / members, with its exact 95% interval, read off the full "
                f"ROC (false positives allowed of the {n} non-members: {allowed}; the counts are in the CSV). AUC "
                f"interval: Hanley & McNeil. Balanced accuracy: cross-fitted, each of two folds of the audited "
                f"examples decided at the threshold fitted on the other (the study's rule: its fixed 0.9999). RMIA "
                f"compares with validation images as population samples (column population; no model trains on "
                f"them), in two configurations (column configuration); the headline is the stronger on the "
                f"undefended CNN by TPR at 1% FPR: {mr.headline_attack(main)}. Offline RMIA's a is tuned per target "
                f"on one of its references (column offline_a). LiRA uses one variance for all examples. "
                f"at_top_score / nonmembers_at_top: examples sharing the highest score, and how many are "
                f"non-members. Every target's row: {stem.name}_targets.csv.")
    leakage = mr.leakage_table(ctx.results_dir, rows, adversarial, resamples=200 if ctx.quick else 1000,
                               seed=ctx.seed)
    if leakage:
        write_table(leakage, f"{stem}_leakage", title=f"Leakage of each defense minus the undefended CNN's, "
                    f"{protocol} protocol, {queries}, target by target on the same examples",
                    note="The defense's figure minus the undefended CNN's (positive: it leaks more); target 'pooled': "
                    "every target's scores in one ROC. Intervals: 95% "
                    f"percentiles of a paired bootstrap ({leakage[0]['resamples']} draws; members and non-members "
                    "resampled separately, the same draw for both models).")
        verdicts = mr.verdict_table(leakage)
        write_table(verdicts, f"{stem}_verdict", title=f"Does a defense leak more or less than the undefended "
                    f"CNN? {protocol} protocol, {queries}: the difference in AUC and in TPR at "
                    f"{100 * mr.LOW_FPRS[-1]:g}% and {100 * mr.LOW_FPRS[0]:g}% FPR per target [paired 95% interval], "
                    "and pooled over targets",
                    note="verdict_auc, verdict_tpr (1% FPR), verdict_tpr01 (0.1% FPR): 'leaks less' (more) by that "
                    "metric only where every target's interval lies below (above) 0; at 0.1% FPR only where a "
                    f"target's non-members allow {mr.MIN_FALSE_POSITIVES} false positives or more (column "
                    "false_positives_at_0.1%_fpr); d_*_sd: the standard deviation of the differences over targets "
                    "(training-run variation); d_*_pooled: every target's scores in one ROC, as privacy_meter pools "
                    "them; TPR differences in percentage points (pp).")
    attack = mr.headline_attack(main) if design.models > 1 and not adversarial else "loss"
    mr.plot_roc(ctx.results_dir, rows, attack, f"Membership inference ({attack}), {protocol} protocol, {queries}",
                f"{stem}_roc.png", adversarial)
    return stem


def run_membership_inference(ctx, n, models, match_all=False, adversarial=False, references_dir=None,
                             from_outputs=False):
    """Every attack against every target of every defense of the protocol's catalogue
    whose model is cached (through the defense: a filter at prediction time, a smoothed
    classifier's noisy predictions), `models` models per matched recipe; from_outputs:
    every defense of the catalogue, from the saved outputs of its models alone."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    design = mm.design_for(data, n, models, ctx.seed)
    defenses = catalogue(ctx, data)
    if adversarial:
        if from_outputs:
            raise UserError("--adversarial-queries attacks the defenses' models themselves: not with --from-outputs")
        defenses = [d for d in defenses if d.kind in ADVERSARIAL_QUERY_KINDS]
    if from_outputs:
        found = [(d, None) for d in defenses]
    else:
        get_base_model(ctx, data)
        found = load_defenses(ctx.models_dir, defenses)
    experiment = Experiment(ctx, data, design, match_all, adversarial, references_dir, from_outputs)
    print(f"{len(found)} defenses; {design.n:,} members / {design.n:,} non-members per target; "
          f"{describe_design(design, len(data.y_train))}")
    start = time.time()
    rows, progress = [], Progress(len(found), "membership inference", "defenses", every=0)
    for i, (defense, model) in enumerate(found):
        rows += attack_defense(experiment, defense, model)
        progress.update(i + 1)
    stem = write_tables(ctx, experiment, rows)
    print(f"wrote {stem}.csv, .md, _targets, _leakage, _verdict and _roc.png ({time.time() - start:.0f} s)")
