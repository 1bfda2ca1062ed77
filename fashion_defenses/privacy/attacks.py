"""Membership-inference scores and their statistics, in numpy alone (no model here):
the reference-model attacks (LiRA offline and online, Carlini et al. 2022; RMIA,
Zarifzadeh et al. 2024, at privacy_meter's defaults and in its paper's
configuration), TPR at a fixed FPR read off the full ROC with its count of
false positives and an exact interval, the AUC's interval, and the paired bootstrap
that compares two models' leakage on the same examples.

Conventions: a score is higher for "more likely a member"; `inside` is a boolean
matrix (reference model, example) that says which reference trained on which example.
"""
import dataclasses

import numpy as np
from scipy.stats import norm, trim_mean

from fashion_defenses.privacy import signals
from fashion_defenses.reporting import accuracy_ci

RMIA_OFFLINE_A = 0.3   # p(x) ~ ((1 + a) p_OUT(x) + (1 - a)) / 2: privacy_meter's default; runs tune it (tune_offline_a)
RMIA_GAMMA = 1.0       # x dominates z when Pr(x|θ)/Pr(x) > gamma · Pr(z|θ)/Pr(z)


@dataclasses.dataclass(frozen=True)
class RmiaPaperAttack:
    """The RMIA paper's attack settings, as its code sets them for CIFAR-10
    (privacy_meter research/2023_rmia, rmia_online configs): gamma 2, Pr(x) as a 20%
    trimmed mean over references, augmented queries combined by majority vote; its
    signal: signals.SOFT_MARGIN_TAYLOR."""
    gamma: float = 2.0
    trim: float = 0.2

    def describe(self, queries):
        signal = signals.SOFT_MARGIN_TAYLOR
        return (f"the RMIA paper's configuration: soft-margin Taylor softmax (T {signal.temperature:g}, margin "
                f"{signal.margin:g}, {signal.terms} terms), gamma {self.gamma:g}, {100 * self.trim:g}% trimmed mean "
                f"over references, {queries} by majority vote")


RMIA_PAPER = RmiaPaperAttack()


# --------------------------------------------------------------------- LiRA

def _masked_mean(values, mask):
    """Per example (column), the mean of the values where mask holds; NaN where it never does."""
    counts = mask.sum(axis=0)
    return np.where(counts > 0, (values * mask).sum(axis=0) / np.maximum(counts, 1), np.nan)


def in_out_means(references, inside):
    """Each example's mean over the references that trained on it (IN) and over those
    that did not (OUT). With few references, independently drawn, some examples have
    no IN or no OUT reference: their missing mean is the other one moved by the mean
    IN - OUT gap of the examples that have both (an estimate, not a measurement)."""
    out = ~inside
    if not inside.any() or not out.any():
        raise ValueError("LiRA needs references that trained on some examples and references that did not")
    mean_in, mean_out = _masked_mean(references, inside), _masked_mean(references, out)
    both = ~np.isnan(mean_in) & ~np.isnan(mean_out)
    gap = (mean_in - mean_out)[both].mean() if both.any() else references[inside].mean() - references[out].mean()
    return np.where(np.isnan(mean_in), mean_out + gap, mean_in), np.where(np.isnan(mean_out), mean_in - gap, mean_out)


def _global_std(references, mean, mask):
    """One standard deviation for all examples, from the deviations of the examples
    with at least two such references (one reference deviates by zero from its own
    mean); 1e-6 is the floor."""
    counts = mask.sum(axis=0)
    several = mask & (counts >= 2)
    deviations = (references - mean)[several]
    return (deviations.std() if deviations.size else 0.0) + 1e-6


def lira_offline(target, references, inside):
    """Offline LiRA with one variance for all examples (Carlini et al.'s choice for few
    references): how many OUT standard deviations the target's score lies above the
    example's OUT mean. The one-sided test's p-value is a monotone function of this z
    (same ROC); the z itself does not round to a tie, as log Phi(z) does for the z > 8
    of a memorised example."""
    _, mean_out = in_out_means(references, inside)
    return (target - mean_out) / _global_std(references, mean_out, ~inside)


def lira_online(target, references, inside):
    """Online LiRA with global variances: log N(target; mean_IN, s_IN) - log N(target;
    mean_OUT, s_OUT), each mean per example over the references that did (did not)
    train on it."""
    mean_in, mean_out = in_out_means(references, inside)
    std_in, std_out = _global_std(references, mean_in, inside), _global_std(references, mean_out, ~inside)
    return norm.logpdf(target, mean_in, std_in) - norm.logpdf(target, mean_out, std_out)


# --------------------------------------------------------------------- RMIA

def rmia_marginal(reference_probs, inside=None, a=None):
    """Pr(x): the mean of Pr(x|θ') over reference models θ'. Online (a None): over all
    references. Offline (a given): from the OUT references alone, corrected linearly
    towards the IN side, Pr(x) = ((1 + a) p_OUT + 1 - a) / 2, as RMIA does; an example
    that every reference trained on gets p_OUT from its IN references by the same line
    inverted, p_IN = a p_OUT + 1 - a (privacy_meter's fallback)."""
    if a is None:
        return reference_probs.mean(axis=0)
    out = np.ones_like(reference_probs, bool) if inside is None else ~inside
    p_out = _masked_mean(reference_probs, out)
    missing = np.isnan(p_out)
    if missing.any():
        p_in = _masked_mean(reference_probs, ~out)[missing]
        p_out[missing] = np.clip((p_in - (1 - a)) / a, 0.0, 1.0) if a > 0 else p_in
    return 0.5 * ((1 + a) * p_out + (1 - a))


def rmia(target_log_prob, reference_log_probs, inside, population_target_log_prob,
         population_reference_log_probs, population_inside, online=True, a=RMIA_OFFLINE_A, gamma=RMIA_GAMMA):
    """RMIA's score of each example x: the fraction of population samples z (non-members
    of the target) that x dominates, Pr(x|θ)/Pr(x) > gamma Pr(z|θ)/Pr(z). Pr(.) is the
    mean over all references when online, else the offline formula on the OUT ones; x
    and z are estimated alike, each in the training data of some references and not of
    others. For one target the score is a step function of x's own ratio: z sets only
    its resolution (ties), not its ranking."""
    marginal = lambda log_probs, member: rmia_marginal(np.exp(log_probs), member, None if online else a)  # noqa: E731
    with np.errstate(divide="ignore"):
        log_ratio_x = target_log_prob - np.log(marginal(reference_log_probs, inside))
        log_ratio_z = np.sort(population_target_log_prob
                              - np.log(marginal(population_reference_log_probs, population_inside)))
    # how many z have a ratio below x's / gamma: a binary search in the sorted z
    return np.searchsorted(log_ratio_z, log_ratio_x - np.log(gamma), side="left") / len(log_ratio_z)


def rmia_augmented(target_signal, reference_signals, population_target_signal, population_reference_signals,
                   config=RMIA_PAPER, chunk=256):
    """Online RMIA as the RMIA paper's code runs it with augmented queries. Signals are
    (queries, examples) for the target, (references, queries, examples) for the
    references. For query k, Pr(x) is the trimmed mean over references and x dominates
    z when its ratio exceeds gamma times z's; x dominates z when it does so for more
    than half of the queries. Score: the fraction of z that x dominates."""
    ratio = lambda t, refs: t / trim_mean(refs, config.trim, axis=0)  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_x = ratio(np.asarray(target_signal, np.float64), np.asarray(reference_signals, np.float64))
        ratio_z = ratio(np.asarray(population_target_signal, np.float64),
                        np.asarray(population_reference_signals, np.float64))
    queries = len(ratio_x)
    scores = np.empty(ratio_x.shape[1])
    for start in range(0, len(scores), chunk):
        x = ratio_x[:, start:start + chunk, None]
        votes = (x > config.gamma * ratio_z[:, None, :]).sum(axis=0)   # (examples, population)
        scores[start:start + chunk] = (2 * votes > queries).mean(axis=1)
    return scores


RMIA_A_GRID = np.round(np.arange(0, 1.01, 0.1), 1)


def tune_offline_a(paired_log_prob, paired_is_member, reference_log_probs, inside, population_paired_log_prob,
                   population_reference_log_probs, population_inside, grid=RMIA_A_GRID):
    """Offline RMIA's a, chosen as privacy_meter chooses it: attack a model the attacker
    trained itself (a reference, whose members it knows) with the other references,
    and keep the a of the highest AUC on that model. Returns (a, {a: AUC})."""
    aucs = {float(a): auc_fast(rmia(paired_log_prob, reference_log_probs, inside, population_paired_log_prob,
                                    population_reference_log_probs, population_inside, online=False, a=a),
                               paired_is_member) for a in grid}
    return max(aucs, key=lambda a: (aucs[a], -a)), aucs


# ---------------------------------------------------------------- statistics

def tpr_at_fpr(score, is_member, fpr):
    """The best TPR among thresholds whose false positives are at most floor(fpr x
    non-members), on the full ROC (every distinct score a threshold). Returns (true
    positives, members, false positives at that threshold, false positives allowed)."""
    score, is_member = np.asarray(score, np.float64), np.asarray(is_member, bool)
    nonmember_scores = np.sort(score[~is_member])[::-1]
    allowed = int(np.floor(fpr * len(nonmember_scores) + 1e-9))
    members = score[is_member]
    if allowed >= len(nonmember_scores):
        return len(members), len(members), len(nonmember_scores), allowed
    # call "member" above the (allowed + 1)-th highest non-member score: ties at it stay out
    cut = nonmember_scores[allowed]
    return int((members > cut).sum()), len(members), int((nonmember_scores > cut).sum()), allowed


def tpr_at_fpr_stats(score, is_member, fpr):
    """tpr_at_fpr with the TPR's exact (Clopper-Pearson) 95% interval."""
    tp, n_members, fp, allowed = tpr_at_fpr(score, is_member, fpr)
    stats = accuracy_ci(np.r_[np.ones(tp, bool), np.zeros(n_members - tp, bool)])
    return {"tpr": stats["acc"], "ci_low": stats["ci_low"], "ci_high": stats["ci_high"], "tp": tp,
            "members": n_members, "fp": fp, "fp_allowed": allowed}


def auc_fast(score, is_member):
    """ROC AUC from ranks (ties count one half), as sklearn's roc_auc_score."""
    from scipy.stats import rankdata
    score, is_member = np.asarray(score, np.float64), np.asarray(is_member, bool)
    ranks = rankdata(score)
    n_pos, n_neg = is_member.sum(), (~is_member).sum()
    return float((ranks[is_member].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_interval(auc, n_members, n_nonmembers, z=1.959964):
    """95% interval of a ROC AUC from Hanley & McNeil's (1982) standard error: is an
    AUC of 0.52 on 2,000 + 2,000 examples above chance or noise?"""
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    variance = (auc * (1 - auc) + (n_members - 1) * (q1 - auc ** 2)
                + (n_nonmembers - 1) * (q2 - auc ** 2)) / (n_members * n_nonmembers)
    half = z * np.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def _weighted_figures(groups, n_groups, is_member, weight, fprs):
    """AUC and TPR at each FPR (tpr_at_fpr's rule) of scores given as the index of each
    example's distinct value (ascending), each example counted `weight` times: one
    pass over the distinct scores, so a bootstrap draw costs no sort."""
    pos = np.bincount(groups[is_member], weight[is_member], minlength=n_groups)
    neg = np.bincount(groups[~is_member], weight[~is_member], minlength=n_groups)
    n_pos, n_neg = pos.sum(), neg.sum()
    auc = (pos * (np.cumsum(neg) - neg + 0.5 * neg)).sum() / (n_pos * n_neg)
    neg_at_or_above = np.r_[np.cumsum(neg[::-1])[::-1], 0.0]
    pos_at_or_above = np.r_[np.cumsum(pos[::-1])[::-1], 0.0]
    tprs = []
    for fpr in fprs:
        allowed = np.floor(fpr * n_neg + 1e-9)
        lowest = np.argmax(neg_at_or_above <= allowed)   # the lowest score one can call "member" from
        tprs.append(pos_at_or_above[lowest] / n_pos)
    return (auc, *tprs)


def paired_difference(score_a, score_b, is_member, fpr=0.01, resamples=1000, seed=0, low_fpr=None):
    """Leakage of model A minus model B on the same examples: the difference in AUC and
    in TPR at `fpr` (and at `low_fpr`, keys d_tpr01*, when given), each with a 95%
    percentile interval from a paired bootstrap (members and non-members resampled
    separately; both models see the same draw)."""
    is_member = np.asarray(is_member, bool)
    members, nonmembers = np.flatnonzero(is_member), np.flatnonzero(~is_member)
    rng = np.random.default_rng(seed)
    fprs = (fpr,) if low_fpr is None else (fpr, low_fpr)
    # each score as the index of its distinct value: fixed for every draw
    (values_a, groups_a), (values_b, groups_b) = (np.unique(np.asarray(s, np.float64), return_inverse=True)
                                                  for s in (score_a, score_b))

    def differences(weight):
        fa = _weighted_figures(groups_a.ravel(), len(values_a), is_member, weight, fprs)
        fb = _weighted_figures(groups_b.ravel(), len(values_b), is_member, weight, fprs)
        return tuple(x - y for x, y in zip(fa, fb))

    point = differences(np.ones(len(is_member)))
    draws = np.array([differences(np.bincount(np.r_[rng.choice(members, len(members)),
                                                    rng.choice(nonmembers, len(nonmembers))],
                                              minlength=len(is_member)).astype(np.float64))
                      for _ in range(resamples)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    out = {"resamples": resamples, "seed": seed}
    for i, name in enumerate(("auc", "tpr", "tpr01")[:len(point)]):
        out.update({f"d_{name}": point[i], f"d_{name}_low": low[i], f"d_{name}_high": high[i]})
    return out
