"""Membership inference against every saved model: the study's 0.9999 rule,
calibrated confidence and loss thresholds (Yeom et al. 2018), Shokri et al.'s
shadow-model attack and offline LiRA (Carlini et al. 2022), with ROC AUC, balanced
accuracy and TPR at low FPR.

    python membership_inference.py [--protocol standard|paper] [--shadows 16] [--adversarial-queries] [--quick]
"""
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

import attacks
import filters
from cli import UserError, common_parser, parse_args, positive_int, run_main
from data import Data, load_data
from defenses import catalogue, load_defenses
from model import build_model, get_base_model, get_or_train, predict_logits, tf
from reporting import Progress, pyplot, save_figure, write_table

ATTACKS = ("study", "confidence", "loss", "shadow", "lira")
STUDY_THRESHOLD = 0.9999
NOISY_QUERIES = 32   # a smoothed classifier answers with its mean softmax over this many draws


# --------------------------------------------------------------------- the sets

@dataclasses.dataclass
class MembershipSets:
    """Indices into the protocol's train split (members) and test set (non-members):
    an evaluation pair (the study's: first n of each) and a disjoint calibration pair
    on which thresholds are chosen."""
    eval_members: np.ndarray
    eval_nonmembers: np.ndarray
    calib_members: np.ndarray
    calib_nonmembers: np.ndarray

    def describe(self):
        return {k: [int(v[0]), int(v[-1]), len(v)] for k, v in dataclasses.asdict(self).items()}


def membership_sets(data, n):
    half_test = len(data.y_test) // 2
    return MembershipSets(np.arange(n), np.arange(n), np.arange(n, 2 * n),
                          np.arange(half_test, half_test + n))


def stack(data, members, nonmembers):
    x = np.concatenate([data.x_train[members], data.x_test[nonmembers]])
    y = np.concatenate([data.y_train[members], data.y_test[nonmembers]])
    return x, y, np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]


# ---------------------------------------------------------------------- metrics

def tpr_at_fpr(score, is_member, fpr_target):
    """Highest TPR at an FPR <= target (0 if no threshold reaches it)."""
    from sklearn.metrics import roc_curve
    fpr, tpr, _ = roc_curve(is_member, score)
    ok = fpr <= fpr_target
    return float(tpr[ok].max()) if ok.any() else 0.0


def auc_interval(auc, n_members, n_nonmembers, z=1.959964):
    """95% interval of a ROC AUC from Hanley & McNeil's (1982) standard error: is an
    AUC of 0.52 on 2,000 + 2,000 examples above chance or noise?"""
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    variance = (auc * (1 - auc) + (n_members - 1) * (q1 - auc ** 2)
                + (n_nonmembers - 1) * (q2 - auc ** 2)) / (n_members * n_nonmembers)
    half = z * np.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def mia_metrics(score, is_member, decision):
    """Every figure from per-example scores (higher = more likely member) and the
    attack's yes/no decisions."""
    from sklearn.metrics import (balanced_accuracy_score, f1_score, precision_score, recall_score,
                                 roc_auc_score)
    is_member, decision = np.asarray(is_member, bool), np.asarray(decision, bool)
    n_non = int((~is_member).sum())
    tpr, fpr = decision[is_member].mean(), decision[~is_member].mean()
    auc = float(roc_auc_score(is_member, score))
    auc_low, auc_high = auc_interval(auc, int(is_member.sum()), n_non)
    return {"n_members": int(is_member.sum()), "n_nonmembers": n_non,
            "auc": auc, "auc_ci_low": auc_low, "auc_ci_high": auc_high,
            "balanced_acc": float(balanced_accuracy_score(is_member, decision)),
            "accuracy": float((decision == is_member).mean()), "advantage": float(tpr - fpr),
            "tpr_at_0.1%_fpr": tpr_at_fpr(score, is_member, 0.001),
            "tpr_at_1%_fpr": tpr_at_fpr(score, is_member, 0.01),
            "nonmembers_below_0.1%_fpr": int(np.floor(0.001 * n_non)),
            "precision": float(precision_score(is_member, decision, zero_division=0)),
            "recall": float(recall_score(is_member, decision, zero_division=0)),
            "f1": float(f1_score(is_member, decision, zero_division=0))}


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


def scores_from_logits(logits, y):
    """(max softmax, true-class probability, minus the loss, logit-scaled confidence)."""
    logits = logits.astype(np.float64)
    log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    true = log_probs[np.arange(len(y)), y]
    others = log_probs.copy()
    others[np.arange(len(y)), y] = -np.inf
    scaled = true - np.logaddexp.reduce(others, axis=1)   # log p_y - log(1 - p_y), stable
    return {"max_softmax": np.exp(log_probs.max(axis=1)), "p_true": np.exp(true), "neg_loss": true,
            "scaled": scaled}


def shadow_features(logits, y):
    """Shokri-style attack features: the sorted top-3 probabilities and the
    logit-scaled true-class confidence."""
    probs = np.sort(tf.nn.softmax(logits).numpy(), axis=1)[:, ::-1][:, :3]
    return np.column_stack([probs, scores_from_logits(logits, y)["scaled"]])


# -------------------------------------------------------------------- shadows

def shadow_pool(data, sets, size):
    """The shadow models' data pool: both evaluation sets plus further training
    images; (x, y, key) where key marks the evaluation examples."""
    used = set(sets.eval_members.tolist()) | set(sets.calib_members.tolist())
    extra = np.array([i for i in range(len(data.y_train)) if i not in used][:max(0, size - 2 * len(sets.eval_members))])
    x = np.concatenate([data.x_train[sets.eval_members], data.x_test[sets.eval_nonmembers], data.x_train[extra]])
    y = np.concatenate([data.y_train[sets.eval_members], data.y_test[sets.eval_nonmembers], data.y_train[extra]])
    return x, y


def get_shadows(ctx, data, sets, k, pool_size):
    """K shadow models, each trained on a random half of the pool from its own
    initialisation (seed + 1 + s; cached in models/); returns their logits on the
    pool and the in/out matrix (k, pool)."""
    x_pool, y_pool = shadow_pool(data, sets, pool_size)
    rng = np.random.default_rng(ctx.seed)
    inside = np.zeros((k, len(y_pool)), bool)
    logits = np.zeros((k, len(y_pool), 10), np.float32)
    progress = Progress(k, "shadow models", every=0)
    for s in range(k):
        half = rng.permutation(len(y_pool))[:len(y_pool) // 2]
        inside[s, half] = True
        name = f"shadow_{ctx.protocol.architecture}_pool{len(y_pool)}_{s}of{k}"
        shadow_data = Data(x_pool[half], y_pool[half], data.x_val[:500], data.y_val[:500],
                           data.x_test[:0], data.y_test[:0], half, np.arange(500), np.arange(0))
        model, _ = get_or_train(ctx, name, lambda: build_model(ctx.protocol), shadow_data,
                                extra={"shadow_of": ctx.protocol.name, "pool_size": len(y_pool)},
                                seed=(ctx.seed + 1 + s) % 2 ** 32)
        logits[s] = predict_logits(model, x_pool)
        progress.update(s + 1)
    return x_pool, y_pool, inside, logits


def lira_offline_scores(target_scaled, shadow_scaled, inside):
    """Offline LiRA with a global variance (Carlini et al.'s choice for few shadows):
    how far above the OUT shadows' mean the target's logit-scaled confidence lies, as
    a one-sided Gaussian log-probability (higher = member). An example that no shadow
    left out falls back on the mean over all OUT scores."""
    out = ~inside
    all_out = shadow_scaled[out]
    counts = out.sum(axis=0)
    mean = np.where(counts > 0, (shadow_scaled * out).sum(axis=0) / np.maximum(counts, 1), all_out.mean())
    std = all_out.std() + 1e-6
    return norm.logcdf((target_scaled - mean) / std)


# ------------------------------------------------------------------ experiment

def scores_path(results_dir, model_name, attack, adversarial_queries=False):
    """Where one model's scores under one attack are saved (arrays score, is_member, decision)."""
    return Path(results_dir) / "mia" / f"{model_name}_{attack}{'_adv' if adversarial_queries else ''}.npz"


def table_stem(results_dir, protocol_name, adversarial_queries=False):
    """The results table of a protocol's membership inference (.csv and .md)."""
    suffix = "_adversarial_queries" if adversarial_queries else ""
    return Path(results_dir) / f"membership_inference_{protocol_name}{suffix}"


def attack_scores(model, sigma, data, sets, shadows, seed, adversarial_queries=False):
    """Every attack's (scores, decisions) on the evaluation members and non-members,
    and whether each is a member. sigma > 0: the model is the base of a smoothed
    classifier, queried through its noisy predictions."""
    x_eval, y_eval, is_member = stack(data, sets.eval_members, sets.eval_nonmembers)
    x_cal, y_cal, cal_member = stack(data, sets.calib_members, sets.calib_nonmembers)
    if adversarial_queries:
        view = filters.bpda_view(model) if filters.filter_layers(model) else model
        pgd = attacks.SUITE["PGD-10"]
        x_eval = pgd.run(view, x_eval, y_eval, attacks.HEADLINE_EPS, seed)
        x_cal = pgd.run(view, x_cal, y_cal, attacks.HEADLINE_EPS, seed)
    ev = scores_from_logits(query_logits(model, x_eval, sigma, seed), y_eval)
    cal = scores_from_logits(query_logits(model, x_cal, sigma, seed + 1), y_cal)
    results = {"study": (ev["max_softmax"], study_decisions(ev["max_softmax"]))}
    for attack, key in (("confidence", "p_true"), ("loss", "neg_loss")):
        results[attack] = (ev[key], threshold_decisions(ev[key], cal[key], cal_member))
    if shadows is not None:
        from sklearn.ensemble import HistGradientBoostingClassifier
        _, y_pool, inside, shadow_logits = shadows
        n_eval = len(y_eval)
        features = np.concatenate([shadow_features(shadow_logits[s], y_pool) for s in range(len(inside))])
        classifier = HistGradientBoostingClassifier(random_state=seed).fit(features, inside.ravel())
        target_logits = query_logits(model, x_eval, sigma, seed)
        member_prob = classifier.predict_proba(shadow_features(target_logits, y_eval))[:, 1]
        results["shadow"] = (member_prob, member_prob >= 0.5)
        shadow_scaled = np.stack([scores_from_logits(shadow_logits[s][:n_eval], y_pool[:n_eval])["scaled"]
                                  for s in range(len(inside))])
        lira = lira_offline_scores(ev["scaled"], shadow_scaled, inside[:, :n_eval])
        # decision threshold: the OUT shadows' own 5% tail (no evaluation labels used)
        results["lira"] = (lira, lira >= np.log(0.95))
    return results, is_member


def attack_model(ctx, name, model, data, sets, shadows, sigma=0.0, adversarial_queries=False):
    """Every attack on one model; returns table rows and writes the score files."""
    results, is_member = attack_scores(model, sigma, data, sets, shadows, ctx.seed, adversarial_queries)
    rows = []
    for attack, (score, decision) in results.items():
        out = scores_path(ctx.results_dir, name, attack, adversarial_queries)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp.npz")
        np.savez(tmp, score=np.asarray(score, np.float64), is_member=is_member, decision=np.asarray(decision))
        tmp.replace(out)
        rows.append({"protocol": ctx.protocol.name, "model": name, "attack": attack,
                     "queries": (f"PGD-10 at L-inf {attacks.HEADLINE_EPS:g} ("
                                 f"{attacks.SUITE['PGD-10'].describe(attacks.HEADLINE_EPS)})"
                                 if adversarial_queries else "clean"),
                     **mia_metrics(score, is_member, decision)})
        r = rows[-1]
        print(f"  {name:>36} {attack:>10}: AUC {r['auc']:.3f} [{r['auc_ci_low']:.3f}, {r['auc_ci_high']:.3f}], "
              f"balanced acc {100 * r['balanced_acc']:.1f}%, TPR@0.1%FPR {100 * r['tpr_at_0.1%_fpr']:.2f}%, "
              f"study-style acc {100 * r['accuracy']:.1f}%")
    return rows


def plot_roc(results_dir, protocol_name, rows, attack, path, adversarial_queries=False):
    from sklearn.metrics import roc_curve
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    rows = [r for r in rows if r["attack"] == attack]
    colors = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, r in enumerate(rows):
        saved = np.load(scores_path(results_dir, r["model"], attack, adversarial_queries))
        fpr, tpr, _ = roc_curve(saved["is_member"], saved["score"])
        ax.loglog(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), color=colors[i % 20],
                  label=f"{r['model']} (AUC {r['auc']:.3f})")
    ax.loglog([1e-4, 1], [1e-4, 1], "k:", lw=1, label="chance")
    if rows:  # below one non-member's worth of FPR the curve says nothing
        ax.axvspan(1e-4, 1 / rows[0]["n_nonmembers"], color="0.85", zorder=0,
                   label=f"FPR < 1/{rows[0]['n_nonmembers']} non-members")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(1e-4, 1), ylim=(1e-4, 1),
           title=f"Membership inference ({attack}), {protocol_name} protocol")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6)
    save_figure(fig, path)


def run_membership_inference(ctx, n, k, adversarial_queries=False):
    """Every attack against every defense of the protocol's catalogue whose model is
    cached, queried through the defense (a filter at prediction time included), with k
    shadow models and n members / n non-members."""
    protocol = ctx.protocol
    data = load_data(protocol, ctx.data_dir, ctx.quick)
    if 2 * n > len(data.y_train) or n > len(data.y_test) // 2:
        most = min(len(data.y_train), len(data.y_test)) // 2
        raise UserError(f"--members {n} is too large for this protocol's data ({len(data.y_train)} training, "
                        f"{len(data.y_test)} test images: at most {most})")
    sets = membership_sets(data, n)
    get_base_model(ctx, data)
    models = load_defenses(ctx.models_dir, catalogue(ctx, data))
    pool = min(len(data.y_train), 2 * protocol.n_train if protocol.name == "paper" else 20000)
    print(f"{len(models)} models; {n} members / {n} non-members; {k} shadow models on a pool of {pool}")
    start = time.time()
    shadows = get_shadows(ctx, data, sets, k, pool)
    rows, progress = [], Progress(len(models), "membership inference", "defenses", every=0)
    for k, (defense, model) in enumerate(models):
        rows += attack_model(ctx, defense.key, model, data, sets, shadows, defense.sigma, adversarial_queries)
        progress.update(k + 1)
    stem = table_stem(ctx.results_dir, protocol.name, adversarial_queries)
    write_table(rows, stem, title=f"Membership inference, {protocol.name} protocol, {n} members (first training "
                f"images) and {n} non-members (first test images), {k} shadow models, seed {ctx.seed}; "
                f"sets {json.dumps(sets.describe())}")
    plot_roc(ctx.results_dir, protocol.name, rows, "lira", Path(f"{stem}_roc.png"), adversarial_queries)
    print(f"wrote {stem}.csv, {stem}.md, {stem}_roc.png ({time.time() - start:.0f} s)")


def main():
    parser = common_parser("Membership inference against every defense of a protocol whose model is cached.")
    parser.add_argument("--shadows", type=positive_int, default=None,
                        help="shadow models for the shadow and LiRA attacks (default 16; 4 for the paper "
                             "protocol's slow CNN; 2 with --quick)")
    parser.add_argument("--members", type=positive_int, default=None,
                        help="members and non-members evaluated (default 2,000, the study's; 200 with --quick)")
    parser.add_argument("--adversarial-queries", action="store_true",
                        help="query with the suite's PGD-10 examples at L-inf 0.1 instead of clean images")
    args, ctx = parse_args(parser)
    n = args.members or (200 if ctx.quick else 2000)
    k = args.shadows or (2 if ctx.quick else (4 if ctx.protocol.name == "paper" else 16))
    run_membership_inference(ctx, n, k, args.adversarial_queries)


if __name__ == "__main__":
    run_main(main)
