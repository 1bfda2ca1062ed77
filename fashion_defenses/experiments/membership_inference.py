"""The membership-inference stage (what membership_inference.py runs), the way the
LiRA and RMIA papers run it: complementary pairs of models of each defense's recipe,
all of the target's size, each in turn the target of the other pairs (privacy/design.py). Attacks: RMIA
online and offline (Zarifzadeh et al. 2024; offline a tuned as privacy_meter tunes it),
LiRA offline and online (Carlini et al. 2022), the loss attack (Yeom et al. 2018; its
ROC is that of Song et al.'s confidence attack) and the study's 0.9999 rule. Writes AUC
and TPR at 0.1% and 1% FPR with exact intervals for every target, their spread over
targets, each target's leakage against the undefended CNN's (paired bootstrap) and the
verdict that holds on every target."""
import dataclasses
import time

import numpy as np

from fashion_defenses.attacks import suite
from fashion_defenses.data import Data, load_data
from fashion_defenses.defenses import filters
from fashion_defenses.defenses.catalogue import catalogue, load_defenses
from fashion_defenses.errors import UserError
from fashion_defenses.framework import tf
from fashion_defenses.models import get_base_model, predict_logits
from fashion_defenses.privacy import attacks as ma
from fashion_defenses.privacy import design as md
from fashion_defenses.privacy import report as mr
from fashion_defenses.reporting import Progress, write_table

NOISY_QUERIES = 32          # a smoothed classifier answers with its mean softmax over this many draws

ADVERSARIAL_QUERY_KINDS = ("undefended", "adversarial training", "filter + adversarial training")

# Each extra model costs one training of the recipe. The paper protocol's adversarial
# training (two fine-tuning runs of its slow CNN each) is matched only with --match-all;
# its rows say so and keep the threshold attacks.
UNMATCHED_BY_DEFAULT = {"paper": ("adversarial training", "filter + adversarial training")}


def design_for(data, n, models, seed):
    """The protocol's membership design (privacy/design.py), or one clear line why not."""
    try:
        return md.membership_design(len(data.y_train), len(data.y_test), n, models, seed)
    except ValueError as e:
        raise UserError(f"--members {n}: {e}") from None


def controlled_images(data, design):
    """The controlled images (x, y): the first m training images, then the first m test images."""
    m = design.m
    return np.concatenate([data.x_train[:m], data.x_test[:m]]), np.concatenate([data.y_train[:m], data.y_test[:m]])


def model_data(data, design, r):
    """What model r > 0 of a recipe trains on: the training images every model shares
    and its half of the controlled images; validated on the protocol's validation images."""
    x_c, y_c = controlled_images(data, design)
    half = design.training_positions(r)
    x = np.concatenate([data.x_train[design.m:], x_c[half]])
    y = np.concatenate([data.y_train[design.m:], y_c[half]])
    # Fashion-MNIST indices: a training image's index, a test image's 60,000 + its index
    controlled_index = np.r_[data.train_index[:design.m], 60000 + data.test_index[:design.m]]
    index = np.r_[data.train_index[design.m:], controlled_index[half]]
    return Data(x, y, data.x_val, data.y_val, data.x_test[:0], data.y_test[:0], index, data.val_index,
                np.arange(0))


def model_context(ctx, design, r):
    """Where model r > 0 of a recipe is cached and the seed it trains with: its own initialisation."""
    folder = ctx.models_dir / "references" / f"loo{2 * design.m}_seed{ctx.seed}_model{r}"
    folder.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(ctx, models_dir=folder, seed=(ctx.seed + r) % 2 ** 32)


def query_logits(model, x, noise_sigma=None, seed=0):
    """The model's logits; for a smoothed classifier the log of its mean softmax
    over NOISY_QUERIES Gaussian draws (its 'noisy predictions')."""
    if not noise_sigma:
        return predict_logits(model, x)
    rng = np.random.default_rng(seed)
    probs = np.zeros((len(x), 10), np.float64)
    for _ in range(NOISY_QUERIES):
        noisy = (x + noise_sigma * rng.standard_normal(x.shape)).astype(np.float32)
        probs += tf.nn.softmax(predict_logits(model, noisy)).numpy()
    return np.log(probs / NOISY_QUERIES + 1e-12).astype(np.float32)


def adversarial_queries(model, x, y, seed):
    """Song et al.'s queries: the suite's PGD-10 at L-inf 0.1 through the defense's
    adaptive view (BPDA through a filter)."""
    view = filters.bpda_view(model) if filters.filter_layers(model) else model
    return suite.SUITE["PGD-10"].run(view, x, y, suite.HEADLINE_EPS, seed)


def rmia_signals(design, logits, y, model, references, population):
    """RMIA's inputs with `model` attacked and `references` calibrating it: log Pr(y|x)
    of the audited examples and of the population samples under each, and which
    reference trained on which."""
    audited = design.audited_positions
    log_prob = lambda r, at: ma.true_class_log_prob(logits[r][at], y[at])  # noqa: E731
    return (log_prob(model, audited), np.stack([log_prob(r, audited) for r in references]),
            design.inside[references][:, audited], log_prob(model, population),
            np.stack([log_prob(r, population) for r in references]), design.inside[references][:, population])


def attack_scores(design, logits, y, target, with_references=True):
    """Every attack's score of the audited examples (higher = more likely a member) with
    model `target` of the recipe as the target and the others as its references.
    logits: each model's logits on the controlled images, y their labels. Offline
    RMIA's a is tuned on the first reference, attacked with the references of the other
    pairs (privacy_meter's rule); with a single reference pair it keeps privacy_meter's
    default."""
    audited = design.audited_positions
    target_logits = logits[target][audited]
    scores = {"study": np.exp(ma.log_softmax(target_logits).max(axis=1)),
              "loss": ma.true_class_log_prob(target_logits, y[audited])}
    refs = design.references(target)
    if not with_references or not refs:
        return scores, {}
    scaled = np.stack([ma.scaled_confidence(logits[r][audited], y[audited]) for r in refs])
    inside = design.inside[refs][:, audited]
    target_scaled = ma.scaled_confidence(target_logits, y[audited])
    scores["lira"] = ma.lira_offline(target_scaled, scaled, inside)
    scores["lira-online"] = ma.lira_online(target_scaled, scaled, inside)
    a, how = ma.RMIA_OFFLINE_A, {"offline_a": ma.RMIA_OFFLINE_A,
                                 "offline_a_tuned_on": "default (no reference pair besides the tuning model's)"}
    paired, others = refs[0], [r for r in refs if r // 2 != refs[0] // 2]   # never its own complement
    if others:
        x_lp, ref_lp, ref_in, z_lp, z_ref_lp, z_in = rmia_signals(design, logits, y, paired, others,
                                                                  design.population_positions(paired))
        a, aucs = ma.tune_offline_a(x_lp, design.inside[paired, audited], ref_lp, ref_in, z_lp, z_ref_lp, z_in)
        how = {"offline_a": a, "offline_a_tuned_on": f"model {paired} (AUC {aucs[a]:.3f})"}
    pop = design.population_positions(target)
    rmia_inputs = rmia_signals(design, logits, y, target, refs, pop)
    scores["rmia"] = ma.rmia(*rmia_inputs, online=True)
    scores["rmia-offline"] = ma.rmia(*rmia_inputs, online=False, a=a)
    return scores, {**how, "population": len(pop)}


@dataclasses.dataclass
class Experiment:
    """What every defense is attacked with: the membership design and the run's settings."""
    ctx: object
    data: object
    design: md.MembershipDesign
    match_all: bool
    adversarial: bool

    def matched(self, defense):
        """(does it get the extra models, what its reference attacks' rows say)."""
        if self.design.models < 2:
            return False, "none (--models 1)"
        unmatched = UNMATCHED_BY_DEFAULT.get(self.ctx.protocol.name, ())
        if not self.match_all and (defense.kind in unmatched or defense.label in unmatched):
            return False, "not matched: the budget (one training of the recipe per extra model; --match-all)"
        return True, self.design.describe(len(self.data.y_train))

    def models(self, defense, model):
        """The recipe's models in design order (the defense's own first); the own model
        alone when it is not matched. Missing extra models are trained and cached."""
        if not self.matched(defense)[0]:
            return [model]
        return [model] + [defense.load_reference(model_context(self.ctx, self.design, r),
                                                 model_data(self.data, self.design, r))
                          for r in range(1, self.design.models)]

    def logits(self, defense, model, x, y, seed):
        if self.adversarial:
            x = adversarial_queries(model, x, y.astype(np.int32), seed)
        return query_logits(model, x, defense.sigma, seed)

    def scores(self, defense, model):
        """For each target: every attack's scores on the audited examples, and how its
        offline RMIA was set. Adversarial queries are made on the audited examples only
        (the threshold attacks need nothing else)."""
        x_c, y_c = controlled_images(self.data, self.design)
        positions = self.design.audited_positions if self.adversarial else np.arange(len(y_c))
        logits = []
        for m in self.models(defense, model):
            full = np.zeros((len(y_c), 10), np.float32)
            full[positions] = self.logits(defense, m, x_c[positions], y_c[positions], self.ctx.seed)
            logits.append(full)
        with_references = not self.adversarial and len(logits) > 1   # an unmatched defense: its own model only
        return [attack_scores(self.design, logits, y_c, t, with_references) for t in range(len(logits))]


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
    is_eval = design.audited_is_eval
    rows = []
    for target, (scores, how) in enumerate(experiment.scores(defense, model)):
        is_member = design.inside[target, design.audited_positions]
        for attack in attack_names:
            row = {"protocol": ctx.protocol.name, "defense": defense.label, "model": defense.key, "attack": attack,
                   "target": target, "queries": queries,
                   "references": references if attack in mr.REFERENCE_ATTACKS else "none needed",
                   "offline_a": how.get("offline_a", "") if attack == "rmia-offline" else "",
                   "offline_a_tuned_on": how.get("offline_a_tuned_on", "") if attack == "rmia-offline" else "",
                   "population": how.get("population", "") if attack.startswith("rmia") else ""}
            row.update(dict.fromkeys(mr.metric_columns(), ""))
            if attack in scores:
                score = scores[attack][is_eval]
                decision = mr.decisions(attack, scores[attack], is_member, is_eval)
                mr.save_scores(mr.scores_path(ctx.results_dir, defense.key, attack, experiment.adversarial, target),
                               score, is_member[is_eval], decision)
                row.update(mr.mia_metrics(score, is_member[is_eval], decision))
            rows.append(row)
        report(defense, target, [r for r in rows if r["target"] == target and r["auc"] != ""])
    return rows


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
    setting = (f"{n} members and {n} non-members of each target among the first {n} training and {n} test "
               f"images; {design.describe(len(experiment.data.y_train))}; seed {ctx.seed}")
    write_table(rows, f"{stem}_targets", title=f"Membership inference, {protocol} protocol, {queries}, every "
                f"target: {setting}", note="Target 0 is the defense's own model (the one every other table "
                "evaluates); targets 1.. are the other models of its recipe.")
    main = mr.over_targets(rows)
    write_table(main, stem, markdown_rows=mr.markdown_rows(main),
                title=f"Membership inference, {protocol} protocol, {queries}: the defenses' own models (target 0) "
                f"and the mean (range) over every target; {setting}",
                note=f"TPR at a fixed FPR: members found / members, with its exact 95% interval, read off the full "
                f"ROC (false positives allowed of the {n} non-members: {allowed}; the counts are in the CSV). AUC "
                f"interval: Hanley & McNeil. Balanced accuracy: at the threshold fitted on the calibration set "
                f"(the study's rule: its fixed 0.9999). RMIA compares with the population samples each target did "
                f"not train on (column population), gamma = {ma.RMIA_GAMMA:g}; offline RMIA's a is tuned per target "
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
                    f"{100 * mr.LOW_FPRS[-1]:g}% FPR per target [paired 95% interval], and pooled over targets",
                    note="verdict_auc, verdict_tpr: 'leaks less' (more) by that metric only where every target's "
                    "interval lies below (above) 0; d_*_sd: the standard deviation of the differences over targets "
                    "(training-run variation); d_*_pooled: every target's scores in one ROC, as privacy_meter pools "
                    "them; TPR differences in percentage points (pp).")
    attack = mr.HEADLINE_ATTACK if design.models > 1 and not adversarial else "loss"
    mr.plot_roc(ctx.results_dir, rows, attack, f"Membership inference ({attack}), {protocol} protocol, {queries}",
                f"{stem}_roc.png", adversarial)
    return stem


def run_membership_inference(ctx, n, models, match_all=False, adversarial=False):
    """Every attack against every target of every defense of the protocol's catalogue
    whose model is cached (through the defense: a filter at prediction time, a smoothed
    classifier's noisy predictions), `models` models per matched recipe."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    design = design_for(data, n, models, ctx.seed)
    get_base_model(ctx, data)
    defenses = catalogue(ctx, data)
    if adversarial:
        defenses = [d for d in defenses if d.kind in ADVERSARIAL_QUERY_KINDS]
    found = load_defenses(ctx.models_dir, defenses)
    experiment = Experiment(ctx, data, design, match_all, adversarial)
    print(f"{len(found)} models; {n} members / {n} non-members per target; {design.describe(len(data.y_train))}")
    start = time.time()
    rows, progress = [], Progress(len(found), "membership inference", "defenses", every=0)
    for i, (defense, model) in enumerate(found):
        rows += attack_defense(experiment, defense, model)
        progress.update(i + 1)
    stem = write_tables(ctx, experiment, rows)
    print(f"wrote {stem}.csv, .md, _targets, _leakage, _verdict and _roc.png ({time.time() - start:.0f} s)")
