"""Membership inference against every defense of a protocol, each calibrated on
reference models trained with the defense's own recipe: RMIA (Zarifzadeh et al.
2024), LiRA offline and online (Carlini et al. 2022), the loss attack (Yeom et al.
2018; its ROC is that of Song et al.'s confidence attack, a monotone function of it)
and the study's 0.9999 rule. Writes AUC and TPR at 0.1% and 1% FPR with exact
intervals, and each defense's leakage against the undefended CNN (paired bootstrap).

    python membership_inference.py [--protocol standard|paper] [--references 2] [--match-all]
                                   [--adversarial-queries] [--quick]
"""
import dataclasses
import time
from pathlib import Path

from cli import UserError, answer_help_early, common_parser, nonnegative_even, parse_args, positive_int, run_main


def build_parser():
    parser = common_parser("Membership inference against every defense of a protocol whose model is cached, "
                           "calibrated on reference models trained with each defense's own recipe.")
    parser.add_argument("--references", type=nonnegative_even, default=2,
                        help="reference models per defense, in pairs trained on complementary halves of the pool "
                             "(0: the attacks that need none only)")
    parser.add_argument("--match-all", action="store_true",
                        help="train references for every defense, the paper protocol's adversarial training too")
    parser.add_argument("--members", type=positive_int, default=None,
                        help="members and non-members evaluated (default 2,000, the study's; 200 with --quick)")
    parser.add_argument("--adversarial-queries", action="store_true",
                        help="query with the suite's PGD-10 examples at L-inf 0.1 (Song et al.), the undefended "
                             "and adversarially trained models only, threshold attacks only")
    return parser


answer_help_early(__name__, build_parser)

import numpy as np  # noqa: E402 (the imports below load TensorFlow: after --help)

import attacks  # noqa: E402
import filters  # noqa: E402
import membership_attacks as ma  # noqa: E402
import recipes  # noqa: E402
from data import Data, load_data  # noqa: E402
from defenses import catalogue, load_defenses  # noqa: E402
from model import get_base_model, predict_logits, tf  # noqa: E402
from reporting import Progress, atomic_write, pyplot, save_figure, write_table  # noqa: E402

STUDY_THRESHOLD = 0.9999
NOISY_QUERIES = 32          # a smoothed classifier answers with its mean softmax over this many draws
LOW_FPRS = (0.001, 0.01)
REFERENCE_ATTACKS = ("lira", "lira-online", "rmia", "rmia-offline")
ATTACKS = ("study", "loss") + REFERENCE_ATTACKS
ADVERSARIAL_QUERY_KINDS = ("undefended", "adversarial training", "filter + adversarial training")
LEAKAGE_ATTACKS = ("loss", "lira-online", "rmia")
HEADLINE_ATTACK = "rmia"    # the attack the summary tables, the privacy plot and the README quote
# Each reference costs one training of the target's recipe. Matched only with
# --match-all (their rows say so), by kind or label: the paper protocol's adversarial
# training (two fine-tuning runs of its slow CNN, ~30 min per reference on 2 cores), and
# in the standard protocol the two 7-step AT recipes beside PGD AT (each reference pair
# costs about as much as all the cheaper recipes' pairs together); PGD AT answers the
# question whether adversarial training changes leakage.
UNMATCHED_BY_DEFAULT = {"paper": ("adversarial training", "filter + adversarial training"),
                        "standard": (recipes.Recipe("trades").label(), recipes.Recipe("pgd", filter="dual").label())}


# --------------------------------------------------------------------- the sets

@dataclasses.dataclass
class MembershipSets:
    """Indices into the protocol's train split (members) and test set (non-members): an
    evaluation pair (the study's: first n of each), a disjoint calibration pair on which
    decision thresholds are chosen, and population samples z (further test images,
    non-members of every model) that RMIA compares against."""
    eval_members: np.ndarray
    eval_nonmembers: np.ndarray
    calib_members: np.ndarray
    calib_nonmembers: np.ndarray
    population: np.ndarray

    def describe(self):
        return {k: [int(v[0]), int(v[-1]), len(v)] for k, v in dataclasses.asdict(self).items()}


def membership_sets(data, n):
    """The study's sets and ours. The population is the further test images, as many
    as the reference pool (twice the target's training set) has room for."""
    n_train, n_test = len(data.y_train), len(data.y_test)
    if 2 * n >= n_train or 2 * n >= n_test:
        raise UserError(f"--members {n} is too large for this protocol's data ({n_train} training, "
                        f"{n_test} test images: at most {(min(n_train, n_test) - 1) // 2})")
    population = np.arange(2 * n, min(n_test, n_train))
    return MembershipSets(np.arange(n), np.arange(n), np.arange(n, 2 * n), np.arange(n, 2 * n), population)


def audited(data, sets):
    """The examples every attack scores, in the order eval members, eval non-members,
    calibration members, calibration non-members: (x, y, is_member, is_eval)."""
    x = np.concatenate([data.x_train[sets.eval_members], data.x_test[sets.eval_nonmembers],
                        data.x_train[sets.calib_members], data.x_test[sets.calib_nonmembers]])
    y = np.concatenate([data.y_train[sets.eval_members], data.y_test[sets.eval_nonmembers],
                        data.y_train[sets.calib_members], data.y_test[sets.calib_nonmembers]])
    sizes = [len(sets.eval_members), len(sets.eval_nonmembers), len(sets.calib_members), len(sets.calib_nonmembers)]
    is_member = np.repeat([True, False, True, False], sizes)
    is_eval = np.repeat([True, True, False, False], sizes)
    return x, y, is_member, is_eval


# ----------------------------------------------------------- reference models

@dataclasses.dataclass
class ReferencePool:
    """The data reference models train on: the target's whole training set, the audited
    non-members, the population samples and validation images, up to twice the target's
    training set (as large as the data allows). References 2p and 2p+1 train on
    complementary random halves, so each audited example and each population sample is
    in the training data of exactly half of the references."""
    x: np.ndarray
    y: np.ndarray
    audited_positions: np.ndarray     # where audited()'s examples sit in the pool, in its order
    population_positions: np.ndarray  # where the population samples sit
    halves: list                      # pool positions each reference trains on

    @property
    def size(self):
        return len(self.y)

    def inside(self, positions):
        """(reference, example at these pool positions): did the reference train on it?"""
        member = np.zeros((len(self.halves), self.size), bool)
        for r, half in enumerate(self.halves):
            member[r, half] = True
        return member[:, positions]

    def describe(self):
        return (f"{len(self.halves)} of the same recipe, each on {len(self.halves[0]):,} images "
                f"(half of a {self.size:,}-image pool)")


def reference_pool(data, sets, k, seed):
    n_train = len(data.y_train)
    test_part = np.r_[sets.eval_nonmembers, sets.calib_nonmembers, sets.population]
    fill = max(0, min(len(data.y_val), n_train - len(test_part)))
    x = np.concatenate([data.x_train, data.x_test[test_part], data.x_val[:fill]])
    y = np.concatenate([data.y_train, data.y_test[test_part], data.y_val[:fill]])
    test_position = dict(zip(test_part.tolist(), range(n_train, n_train + len(test_part))))
    at = lambda test_indices: np.array([test_position[i] for i in test_indices], int)  # noqa: E731
    positions = np.r_[sets.eval_members, at(sets.eval_nonmembers), sets.calib_members,
                      at(sets.calib_nonmembers)].astype(int)
    halves = []
    for pair in range(k // 2):
        order = np.random.default_rng([seed, pair]).permutation(len(y))
        halves += [np.sort(order[:len(y) // 2]), np.sort(order[len(y) // 2:2 * (len(y) // 2)])]
    return ReferencePool(x, y, positions, at(sets.population), halves)


def reference_context(ctx, pool, r):
    """Where reference r is cached and the seed it trains with: its own initialisation."""
    folder = ctx.models_dir / "references" / f"pool{pool.size}_seed{ctx.seed}_ref{r}"
    folder.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(ctx, models_dir=folder, seed=(ctx.seed + 1 + r) % 2 ** 32)


def reference_data(data, pool, r):
    half = pool.halves[r]
    empty = np.arange(0)
    # validation images only monitor training (some may be in the pool)
    return Data(pool.x[half], pool.y[half], data.x_val[-1000:], data.y_val[-1000:], data.x_test[:0],
                data.y_test[:0], half, data.val_index[-1000:], empty)


# ---------------------------------------------------------------------- queries

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
    return attacks.SUITE["PGD-10"].run(view, x, y, attacks.HEADLINE_EPS, seed)


# ---------------------------------------------------------------------- attacks

def attack_scores(target_logits, y, references=None):
    """Every attack's score of each audited example (higher = more likely a member).
    references: (their logits (k, N, 10), inside (k, N), the target's logits on the
    population, the references' logits on it (k, Z, 10), the population's labels, which
    references trained on which population sample (k, Z))."""
    scores = {"study": np.exp(ma.log_softmax(target_logits).max(axis=1)),
              "loss": ma.true_class_log_prob(target_logits, y)}
    if references is None:
        return scores
    ref_logits, inside, pop_target, pop_refs, y_pop, pop_inside = references
    target_scaled, refs_scaled = ma.scaled_confidence(target_logits, y), ma.scaled_confidence(ref_logits, y)
    scores["lira"] = ma.lira_offline(target_scaled, refs_scaled, inside)
    scores["lira-online"] = ma.lira_online(target_scaled, refs_scaled, inside)
    rmia_inputs = (scores["loss"], ma.true_class_log_prob(ref_logits, y), inside,
                   ma.true_class_log_prob(pop_target, y_pop), ma.true_class_log_prob(pop_refs, y_pop), pop_inside)
    scores["rmia"] = ma.rmia(*rmia_inputs, online=True)
    scores["rmia-offline"] = ma.rmia(*rmia_inputs, online=False)
    return scores


def calibrated_threshold(score, is_member):
    """The threshold with the best balanced accuracy on calibration data."""
    candidates = np.unique(score)
    best, best_acc = candidates[0], -1.0
    for t in candidates[:: max(1, len(candidates) // 2000)]:
        acc = 0.5 * ((score[is_member] >= t).mean() + (score[~is_member] < t).mean())
        if acc > best_acc:
            best, best_acc = t, acc
    return float(best)


def study_decisions(max_softmax):
    """The study's rule: member if the top softmax probability exceeds 0.9999 (strictly)."""
    return np.asarray(max_softmax) > STUDY_THRESHOLD


def threshold_decisions(eval_score, calib_score, calib_is_member):
    """A threshold attack's decisions: the threshold is fitted on calibration data
    only; the evaluation labels never reach this function."""
    return np.asarray(eval_score) >= calibrated_threshold(np.asarray(calib_score), np.asarray(calib_is_member, bool))


def decisions(attack, score, is_member, is_eval):
    if attack == "study":
        return study_decisions(score[is_eval])
    return threshold_decisions(score[is_eval], score[~is_eval], is_member[~is_eval])


def fpr_key(fpr):
    return f"{100 * fpr:g}%_fpr"


def metric_columns():
    """mia_metrics' keys, in its order (a row without figures has them empty)."""
    low = [f"{p}_{fpr_key(f)}{s}" for f in LOW_FPRS for p, s in
           (("tpr_at", ""), ("tpr_at", "_ci_low"), ("tpr_at", "_ci_high"), ("tp_at", ""), ("fp_at", ""))]
    return ["n_members", "n_nonmembers", "auc", "auc_ci_low", "auc_ci_high", *low, "balanced_acc", "accuracy",
            "advantage", "precision", "recall", "f1"]


def mia_metrics(score, is_member, decision):
    """Every figure from per-example scores (higher = more likely member) and the
    attack's yes/no decisions: AUC with its interval, TPR at each of LOW_FPRS on the
    full ROC with its true and false positives and exact interval, and the decisions'
    balanced accuracy, precision, recall and F1."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score
    is_member, decision = np.asarray(is_member, bool), np.asarray(decision, bool)
    n_mem, n_non = int(is_member.sum()), int((~is_member).sum())
    auc = ma.auc_fast(score, is_member)
    auc_low, auc_high = ma.auc_interval(auc, n_mem, n_non)
    row = {"n_members": n_mem, "n_nonmembers": n_non, "auc": auc, "auc_ci_low": auc_low, "auc_ci_high": auc_high}
    for fpr in LOW_FPRS:
        s = ma.tpr_at_fpr_stats(score, is_member, fpr)
        key = fpr_key(fpr)
        row.update({f"tpr_at_{key}": s["tpr"], f"tpr_at_{key}_ci_low": s["ci_low"],
                    f"tpr_at_{key}_ci_high": s["ci_high"], f"tp_at_{key}": s["tp"], f"fp_at_{key}": s["fp"]})
    tpr, fpr = decision[is_member].mean(), decision[~is_member].mean()
    row.update({"balanced_acc": float(balanced_accuracy_score(is_member, decision)),
                "accuracy": float((decision == is_member).mean()), "advantage": float(tpr - fpr),
                "precision": float(precision_score(is_member, decision, zero_division=0)),
                "recall": float(recall_score(is_member, decision, zero_division=0)),
                "f1": float(f1_score(is_member, decision, zero_division=0))})
    return row


def auc_text(row):
    """'0.531 [0.513, 0.549]' from a table row; '' for a row without figures."""
    if not row or row.get("auc", "") == "":
        return ""
    return f"{float(row['auc']):.3f} [{float(row['auc_ci_low']):.3f}, {float(row['auc_ci_high']):.3f}]"


def tpr_text(row, fpr=LOW_FPRS[-1]):
    """'23/2000, 1.15% [0.73, 1.72]': the members found at that FPR, as a count and a
    percentage with its exact interval."""
    if not row or row.get("auc", "") == "":
        return ""
    key = fpr_key(fpr)
    return (f"{row[f'tp_at_{key}']}/{row['n_members']}, {100 * float(row[f'tpr_at_{key}']):.2f}% "
            f"[{100 * float(row[f'tpr_at_{key}_ci_low']):.2f}, {100 * float(row[f'tpr_at_{key}_ci_high']):.2f}]")


def markdown_rows(rows):
    """The table as a reader wants it: one formatted cell per figure, and one line for
    a defense's reference attacks when they had no references."""
    out = []
    for r in rows:
        row = {"defense": r["defense"], "attack": r["attack"]}
        if r["auc"] == "":
            if out and out[-1]["defense"] == r["defense"] and out[-1]["AUC [95%]"] == r["references"]:
                out[-1]["attack"] += f", {r['attack']}"
                continue
            row.update({"AUC [95%]": r["references"], **{f"TPR at {100 * f:g}% FPR": "" for f in LOW_FPRS},
                        "balanced accuracy": ""})
        else:
            row.update({"AUC [95%]": auc_text(r), **{f"TPR at {100 * f:g}% FPR": tpr_text(r, f) for f in LOW_FPRS},
                        "balanced accuracy": f"{100 * float(r['balanced_acc']):.1f}%"})
        out.append(row)
    return out


# ------------------------------------------------------------------ experiment

def scores_path(results_dir, model_name, attack, adversarial_queries=False):
    """Where one model's scores under one attack are saved (arrays score, is_member, decision)."""
    return Path(results_dir) / "mia" / f"{model_name}_{attack}{'_adv' if adversarial_queries else ''}.npz"


def table_stem(results_dir, protocol_name, adversarial_queries=False):
    """The results table of a protocol's membership inference (.csv and .md)."""
    suffix = "_adversarial_queries" if adversarial_queries else ""
    return Path(results_dir) / f"membership_inference_{protocol_name}{suffix}"


def save_scores(path, score, is_member, decision):
    atomic_write(path, lambda f: np.savez(f, score=np.asarray(score, np.float64), is_member=is_member,
                                         decision=np.asarray(decision)))


@dataclasses.dataclass
class Experiment:
    """What every defense is attacked with: the audited examples, the population, the
    reference pool (None without references) and the run's settings."""
    ctx: object
    data: object
    sets: MembershipSets
    pool: ReferencePool
    match_all: bool
    adversarial: bool

    def matched(self, defense):
        if self.pool is None:
            return False, "none (--references 0)"
        if self.adversarial:
            return False, "none (adversarial queries: threshold attacks only)"
        unmatched = UNMATCHED_BY_DEFAULT.get(self.ctx.protocol.name, ())
        if not self.match_all and (defense.kind in unmatched or defense.label in unmatched):
            return False, "not matched: the budget (one training of the recipe per reference; --match-all)"
        return True, self.pool.describe()

    def logits(self, defense, model, x, y, seed):
        if self.adversarial:
            x = adversarial_queries(model, x, y.astype(np.int32), seed)
        return query_logits(model, x, defense.sigma, seed)

    def attack(self, defense, model):
        """Every attack's scores on the audited examples, and how the references were made."""
        ctx, data, sets = self.ctx, self.data, self.sets
        x, y, is_member, is_eval = audited(data, sets)
        target = self.logits(defense, model, x, y, ctx.seed)
        matched, how = self.matched(defense)
        if not matched:
            return attack_scores(target, y), how
        x_pop, y_pop = data.x_test[sets.population], data.y_test[sets.population]
        ref_logits, pop_logits = [], []
        for r in range(len(self.pool.halves)):
            reference = defense.load_reference(reference_context(ctx, self.pool, r), reference_data(data, self.pool, r))
            ref_logits.append(self.logits(defense, reference, x, y, ctx.seed))
            pop_logits.append(self.logits(defense, reference, x_pop, y_pop, ctx.seed + 1))
        references = (np.stack(ref_logits), self.pool.inside(self.pool.audited_positions),
                      self.logits(defense, model, x_pop, y_pop, ctx.seed + 1), np.stack(pop_logits), y_pop,
                      self.pool.inside(self.pool.population_positions))
        return attack_scores(target, y, references), how


def attack_defense(experiment, defense, model):
    """Every attack on one defense: table rows (a row without figures for a reference
    attack that had no matched references), score files written."""
    ctx = experiment.ctx
    _, _, is_member, is_eval = audited(experiment.data, experiment.sets)
    scores, references = experiment.attack(defense, model)
    queries = (f"PGD-10 at L-inf {attacks.HEADLINE_EPS:g} ({attacks.SUITE['PGD-10'].describe(attacks.HEADLINE_EPS)})"
               if experiment.adversarial else "clean")
    attack_names = ("study", "loss") if experiment.adversarial else ATTACKS
    rows = []
    for attack in attack_names:
        row = {"protocol": ctx.protocol.name, "defense": defense.label, "model": defense.key, "attack": attack,
               "queries": queries, "references": references if attack in REFERENCE_ATTACKS else "none needed"}
        row.update(dict.fromkeys(metric_columns(), ""))
        if attack not in scores:
            rows.append(row)
            continue
        score, decision = scores[attack][is_eval], decisions(attack, scores[attack], is_member, is_eval)
        save_scores(scores_path(ctx.results_dir, defense.key, attack, experiment.adversarial),
                    score, is_member[is_eval], decision)
        row.update(mia_metrics(score, is_member[is_eval], decision))
        rows.append(row)
        low = fpr_key(LOW_FPRS[-1])
        print(f"  {defense.label:>34} {attack:>12}: AUC {row['auc']:.3f} [{row['auc_ci_low']:.3f}, "
              f"{row['auc_ci_high']:.3f}], TPR at {low.replace('_fpr', '')} FPR {row[f'tp_at_{low}']}/"
              f"{row['n_members']} ({row[f'fp_at_{low}']} false positives)")
    return rows


def leakage_table(results_dir, rows, adversarial=False, resamples=1000, seed=0):
    """Each defense's leakage minus the undefended CNN's, on the same examples: the
    difference in AUC and in TPR at 1% FPR with paired-bootstrap 95% intervals."""
    have = {(r["model"], r["attack"]) for r in rows if r.get("auc") not in (None, "")}
    baseline = next((r for r in rows if r["defense"] == "undefended CNN"), None)
    if baseline is None:
        return []
    table = []
    for r in rows:
        if r["model"] == baseline["model"] or r["attack"] not in LEAKAGE_ATTACKS:
            continue
        if (r["model"], r["attack"]) not in have or (baseline["model"], r["attack"]) not in have:
            continue
        a = np.load(scores_path(results_dir, r["model"], r["attack"], adversarial))
        b = np.load(scores_path(results_dir, baseline["model"], r["attack"], adversarial))
        d = ma.paired_difference(a["score"], b["score"], a["is_member"], LOW_FPRS[-1], resamples, seed)
        table.append({"defense": r["defense"], "model": r["model"], "attack": r["attack"], "queries": r["queries"],
                      **d})
    return table


def plot_roc(results_dir, rows, attack, title, path, adversarial=False):
    """ROC curves of one attack on log axes; the FPR range that rests on fewer than 10
    non-members is shaded (a curve there is a handful of examples)."""
    from sklearn.metrics import roc_curve
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.2))
    rows = [r for r in rows if r["attack"] == attack and r.get("auc") not in (None, "")]
    colors = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, r in enumerate(rows):
        saved = np.load(scores_path(results_dir, r["model"], attack, adversarial))
        fpr, tpr, _ = roc_curve(saved["is_member"], saved["score"], drop_intermediate=False)   # every point
        fpr, tpr = fpr[1:], tpr[1:]   # from the highest score on: (0, 0) has no place on log axes
        # tab20's dark shades first, then its light ones: up to 20 distinct colours
        ax.loglog(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), color=colors[(2 * i) % 20 + (2 * i) // 20 % 2],
                  lw=1.2, label=f"{r['defense']} (AUC {r['auc']:.3f})")
    ax.loglog([1e-4, 1], [1e-4, 1], "k:", lw=1, label="chance")
    if rows:
        ax.axvspan(1e-4, 10 / rows[0]["n_nonmembers"], color="0.88", zorder=0,
                   label=f"FPR on < 10 of {rows[0]['n_nonmembers']} non-members")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(1e-4, 1), ylim=(1e-4, 1), title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, loc="lower right")
    save_figure(fig, path)


def run_membership_inference(ctx, n, k, match_all=False, adversarial=False):
    """Every attack against every defense of the protocol's catalogue whose model is
    cached (through the defense: a filter at prediction time, a smoothed classifier's
    noisy predictions), with k reference models per matched defense."""
    protocol = ctx.protocol
    data = load_data(protocol, ctx.data_dir, ctx.quick)
    sets = membership_sets(data, n)
    get_base_model(ctx, data)
    defenses = catalogue(ctx, data)
    if adversarial:
        defenses = [d for d in defenses if d.kind in ADVERSARIAL_QUERY_KINDS]
    models = load_defenses(ctx.models_dir, defenses)
    pool = reference_pool(data, sets, k, ctx.seed) if k else None
    experiment = Experiment(ctx, data, sets, pool, match_all, adversarial)
    print(f"{len(models)} models; {n} members / {n} non-members; {len(sets.population)} population samples; "
          + (f"references: {pool.describe()}" if pool else "no references"))
    start = time.time()
    rows, progress = [], Progress(len(models), "membership inference", "defenses", every=0)
    for i, (defense, model) in enumerate(models):
        rows += attack_defense(experiment, defense, model)
        progress.update(i + 1)
    stem = table_stem(ctx.results_dir, protocol.name, adversarial)
    queries = "PGD-10 adversarial queries" if adversarial else "clean queries"
    allowed = ", ".join(f"{int(np.floor(f * n + 1e-9))} at {100 * f:g}%" for f in LOW_FPRS)
    write_table(rows, stem, markdown_rows=markdown_rows(rows),
                title=f"Membership inference, {protocol.name} protocol, {queries}: {n} members (first training "
                f"images) and {n} non-members (first test images), seed {ctx.seed}; "
                + ("threshold attacks only" if adversarial else
                   f"reference attacks on {pool.describe()}" if pool else "no reference models"),
                note=f"TPR at a fixed FPR: members found / members, with its exact 95% interval, read off the full "
                f"ROC (false positives allowed of the {n} non-members: {allowed}; the counts are in the CSV). AUC "
                f"interval: Hanley & McNeil. Balanced accuracy: at the threshold fitted on the calibration pair "
                f"(the study's rule: its fixed 0.9999). RMIA compares with {len(sets.population)} population "
                f"samples (a = {ma.RMIA_OFFLINE_A} offline, gamma = {ma.RMIA_GAMMA:g}); LiRA uses one variance "
                f"for all examples. Sets (first index, last index, size): {sets.describe()}.")
    leakage = leakage_table(ctx.results_dir, rows, adversarial, resamples=200 if ctx.quick else 1000, seed=ctx.seed)
    if leakage:
        digest = [{"defense": r["defense"], "attack": r["attack"],
                   "AUC difference [95%]": f"{r['d_auc']:+.3f} [{r['d_auc_low']:+.3f}, {r['d_auc_high']:+.3f}]",
                   f"TPR at {100 * LOW_FPRS[-1]:g}% FPR difference, points [95%]":
                       f"{100 * r['d_tpr']:+.2f} [{100 * r['d_tpr_low']:+.2f}, {100 * r['d_tpr_high']:+.2f}]"}
                  for r in leakage]
        write_table(leakage, f"{stem}_leakage", markdown_rows=digest, title=f"Leakage of each defense minus the undefended CNN's, "
                    f"{protocol.name} protocol, {queries}, on the same {n} + {n} examples",
                    note="The defense's figure minus the undefended CNN's (positive: it leaks more). Intervals: 95% "
                    f"percentiles of a paired bootstrap ({leakage[0]['resamples']} draws; members and non-members "
                    "resampled separately, the same draw for both models).")
    attack = HEADLINE_ATTACK if pool and not adversarial else "loss"
    plot_roc(ctx.results_dir, rows, attack, f"Membership inference ({attack}), {protocol.name} protocol, {queries}",
             Path(f"{stem}_roc.png"), adversarial)
    print(f"wrote {stem}.csv, {stem}.md, {stem}_roc.png" + (f", {stem}_leakage.csv" if leakage else "")
          + f" ({time.time() - start:.0f} s)")


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    n = args.members or (200 if ctx.quick else 2000)
    run_membership_inference(ctx, n, args.references, args.match_all, args.adversarial_queries)


if __name__ == "__main__":
    run_main(main)
