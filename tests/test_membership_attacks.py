"""privacy/attacks.py against independent computations: TPR at a fixed FPR against a
brute-force sweep of every threshold, LiRA and RMIA against the formulas written out
example by example, LiRA against the exact likelihood ratio of a toy problem whose
member and non-member scores are known Gaussians, the paired bootstrap against
sklearn and against a case where it must find nothing."""
import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from fashion_defenses.privacy import attacks as ma
from fashion_defenses.privacy import signals


def brute_force_tpr(score, is_member, fpr):
    """The best TPR over every threshold 'score >= t' (and 'call nobody') whose false
    positives stay within floor(fpr x non-members)."""
    allowed = np.floor(fpr * (~is_member).sum() + 1e-9)
    best = 0.0
    for t in np.r_[np.unique(score), np.inf]:
        if (score[~is_member] >= t).sum() <= allowed:
            best = max(best, (score[is_member] >= t).mean())
    return best


@pytest.mark.parametrize("seed", range(4))
def test_tpr_at_fpr_equals_a_brute_force_sweep(seed):
    rng = np.random.default_rng(seed)
    is_member = rng.random(3000) < 0.4
    score = np.round(rng.normal(size=3000) + 0.8 * is_member, 1)   # rounded: many ties
    for fpr in (0.0, 0.001, 0.005, 0.01, 0.1, 1.0):
        tp, members, fp, allowed = ma.tpr_at_fpr(score, is_member, fpr)
        assert tp / members == pytest.approx(brute_force_tpr(score, is_member, fpr))
        assert fp <= allowed and members == is_member.sum()


def test_tpr_at_fpr_keeps_the_point_a_dropped_roc_would_lose():
    """2 non-members in 2,000 above every member but one: at 0.1% FPR (2 allowed)
    that member counts, 1 of 11."""
    score = np.r_[-1 - np.arange(10) / 100, 5.0, 9.0, 8.0, np.zeros(1998)]
    is_member = np.r_[np.ones(10, bool), True, False, False, np.zeros(1998, bool)]
    tp, members, fp, allowed = ma.tpr_at_fpr(score, is_member, 0.001)
    assert (tp, members, fp, allowed) == (1, 11, 2, 2)
    s = ma.tpr_at_fpr_stats(score, is_member, 0.001)
    assert s["ci_low"] < 1 / 11 < s["ci_high"]


def test_auc_fast_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    is_member = rng.random(500) < 0.5
    score = np.round(rng.normal(size=500) + is_member, 1)
    assert ma.auc_fast(score, is_member) == pytest.approx(roc_auc_score(is_member, score))


def toy_references(rng, k, n, in_mean=2.0, out_mean=0.0, sd=1.0):
    """k references on complementary halves; each scores an example from N(in_mean) if it
    trained on it, else N(out_mean)."""
    inside = np.zeros((k, n), bool)
    for pair in range(k // 2):
        half = rng.permutation(n)[:n // 2]
        inside[2 * pair, half] = True
        inside[2 * pair + 1] = ~inside[2 * pair]
    scores = np.where(inside, in_mean, out_mean) + sd * rng.normal(size=(k, n))
    return scores, inside


def test_lira_equals_its_formula_written_out():
    rng = np.random.default_rng(1)
    refs, inside = toy_references(rng, 4, 50)
    target = rng.normal(size=50)
    out_dev, in_dev, means_out, means_in = [], [], [], []
    for i in range(50):
        means_out.append(refs[~inside[:, i], i].mean())
        means_in.append(refs[inside[:, i], i].mean())
        out_dev += list(refs[~inside[:, i], i] - means_out[-1])
        in_dev += list(refs[inside[:, i], i] - means_in[-1])
    s_out, s_in = np.std(out_dev), np.std(in_dev)
    offline = [(target[i] - means_out[i]) / s_out for i in range(50)]
    online = [norm.logpdf(target[i], means_in[i], s_in) - norm.logpdf(target[i], means_out[i], s_out)
              for i in range(50)]
    np.testing.assert_allclose(ma.lira_offline(target, refs, inside), offline, rtol=1e-4)
    np.testing.assert_allclose(ma.lira_online(target, refs, inside), online, rtol=1e-4, atol=1e-5)


def test_online_lira_recovers_the_true_likelihood_ratio_of_gaussian_scores():
    """Members score N(2, 1), non-members N(0, 1): with 256 references LiRA's statistic
    is the exact log-likelihood ratio up to estimation noise, and ranks the target's
    members as the Neyman-Pearson test does."""
    rng = np.random.default_rng(2)
    refs, inside = toy_references(rng, 256, 400)
    is_member = rng.random(400) < 0.5
    target = np.where(is_member, 2.0, 0.0) + rng.normal(size=400)
    exact = norm.logpdf(target, 2, 1) - norm.logpdf(target, 0, 1)
    lira = ma.lira_online(target, refs, inside)
    assert np.median(np.abs(lira - exact)) < 0.2 and np.corrcoef(lira, exact)[0, 1] > 0.995
    assert ma.auc_fast(lira, is_member) == pytest.approx(ma.auc_fast(exact, is_member), abs=0.01)


def test_rmia_equals_its_formula_written_out():
    rng = np.random.default_rng(3)
    k, n, n_pop = 4, 30, 40
    ref_lp, inside = toy_references(rng, k, n, in_mean=-0.1, out_mean=-1.0, sd=0.3)
    pop_refs, pop_inside = toy_references(rng, k, n_pop, in_mean=-0.2, out_mean=-1.0, sd=0.3)
    ref_lp, pop_refs = np.minimum(ref_lp, 0), np.minimum(pop_refs, 0)
    target_lp = np.minimum(rng.normal(-0.5, 0.4, n), 0)
    pop_target = np.minimum(rng.normal(-1, 0.4, n_pop), 0)
    a, gamma = 0.3, 1.5

    def marginal(log_probs, member, online):
        probs = np.exp(log_probs)
        return probs.mean() if online else 0.5 * ((1 + a) * probs[~member].mean() + 1 - a)

    for online in (True, False):
        expected = []
        for i in range(n):
            ratio_x = np.exp(target_lp[i]) / marginal(ref_lp[:, i], inside[:, i], online)
            wins = sum(ratio_x / (np.exp(pop_target[j]) / marginal(pop_refs[:, j], pop_inside[:, j], online)) > gamma
                       for j in range(n_pop))
            expected.append(wins / n_pop)
        got = ma.rmia(target_lp, ref_lp, inside, pop_target, pop_refs, pop_inside, online=online, a=a, gamma=gamma)
        np.testing.assert_allclose(got, expected)


def test_an_example_without_in_or_out_references_gets_the_others_moved_by_the_gap():
    """Few references drawn independently leave some examples with no OUT (or no IN)
    reference: LiRA moves the other mean by the IN - OUT gap of the examples that have
    both; offline RMIA inverts its line p_IN = a p_OUT + 1 - a (privacy_meter's rule)."""
    references = np.array([[1.0, 4.0, 2.0], [3.0, 6.0, 8.0]])
    inside = np.array([[False, False, True], [True, True, True]])
    mean_in, mean_out = ma.in_out_means(references, inside)
    # examples 0 and 1 have both: gaps 2 and 2; example 2 has no OUT reference
    np.testing.assert_allclose(mean_in, [3.0, 6.0, 5.0])
    np.testing.assert_allclose(mean_out, [1.0, 4.0, 3.0])
    with pytest.raises(ValueError):
        ma.lira_offline(np.zeros(3), np.zeros((2, 3)), np.ones((2, 3), bool))
    probs = np.array([[0.9], [0.9]])
    a = 0.5
    p_out = (0.9 - (1 - a)) / a
    assert ma.rmia_marginal(probs, np.ones((2, 1), bool), a)[0] == pytest.approx(0.5 * ((1 + a) * p_out + 1 - a))
    assert ma.rmia_marginal(np.array([[0.2], [0.9]]), np.array([[False], [True]]), a)[0] == \
        pytest.approx(0.5 * ((1 + a) * 0.2 + 1 - a))   # the OUT reference alone, when there is one


def test_rmia_ranks_as_its_likelihood_ratio_and_z_only_sets_ties():
    """For one target RMIA's score is a step function of x's ratio Pr(x|θ)/Pr(x): sorted by
    the ratio, the scores never decrease; with more population samples, fewer ties."""
    rng = np.random.default_rng(7)
    k, n = 2, 500
    ref_lp, inside = toy_references(rng, k, n, in_mean=-0.2, out_mean=-1.0, sd=0.3)
    target = rng.normal(-0.6, 0.4, n)
    ratio = target - np.log(np.exp(np.minimum(ref_lp, 0)).mean(axis=0))
    scores = {}
    for n_pop in (50, 5000):
        pop_refs, pop_inside = toy_references(rng, k, n_pop, in_mean=-0.2, out_mean=-1.0, sd=0.3)
        score = ma.rmia(target, np.minimum(ref_lp, 0), inside, rng.normal(-0.8, 0.4, n_pop), np.minimum(pop_refs, 0),
                        pop_inside)
        assert (np.diff(score[np.argsort(ratio)]) >= 0).all()
        scores[n_pop] = score
    assert len(np.unique(scores[5000])) > len(np.unique(scores[50]))


def test_offline_a_is_the_grid_point_of_the_best_auc_on_the_paired_model():
    rng = np.random.default_rng(8)
    ref_lp, inside = toy_references(rng, 2, 400, in_mean=-0.1, out_mean=-1.0, sd=0.3)
    is_member = rng.random(400) < 0.5
    paired = np.where(is_member, -0.1, -1.0) + 0.3 * rng.normal(size=400)
    pop_refs, pop_inside = toy_references(rng, 2, 1000, in_mean=-0.1, out_mean=-1.0, sd=0.3)
    args = (np.minimum(paired, 0), is_member, np.minimum(ref_lp, 0), inside, np.minimum(rng.normal(-1, 0.3, 1000), 0),
            np.minimum(pop_refs, 0), pop_inside)
    a, aucs = ma.tune_offline_a(*args)
    assert sorted(aucs) == list(ma.RMIA_A_GRID) and aucs[a] == max(aucs.values())
    for g in ma.RMIA_A_GRID:   # each AUC is offline RMIA's at that a
        score = ma.rmia(args[0], args[2], args[3], args[4], args[5], args[6], online=False, a=g)
        assert aucs[float(g)] == pytest.approx(roc_auc_score(is_member, score))


def test_paired_difference_of_a_model_with_itself_is_exactly_zero():
    rng = np.random.default_rng(4)
    is_member = rng.random(1000) < 0.5
    score = rng.normal(size=1000) + 0.3 * is_member
    d = ma.paired_difference(score, score, is_member, resamples=200)
    assert d["d_auc"] == d["d_auc_low"] == d["d_auc_high"] == 0
    assert d["d_tpr"] == d["d_tpr_low"] == d["d_tpr_high"] == 0


def test_paired_difference_finds_more_leakage_and_matches_sklearn():
    rng = np.random.default_rng(5)
    is_member = rng.random(2000) < 0.5
    noise = rng.normal(size=2000)
    leaky, less = noise + 1.0 * is_member, noise + 0.6 * is_member + 0.5 * rng.normal(size=2000)
    d = ma.paired_difference(leaky, less, is_member, resamples=300)
    assert d["d_auc"] == pytest.approx(roc_auc_score(is_member, leaky) - roc_auc_score(is_member, less))
    assert 0 < d["d_auc_low"] < d["d_auc"] < d["d_auc_high"]
    # the other way round the interval lies below zero
    back = ma.paired_difference(less, leaky, is_member, resamples=300)
    assert back["d_auc_high"] < 0


def test_taylor_soft_margin_is_a_softmax_with_a_margin_when_the_series_is_long():
    """With enough terms the Taylor series is exp itself: the signal is then scipy's
    softmax of logits / T with the true class's entry lowered by the margin."""
    from scipy.special import softmax
    rng = np.random.default_rng(0)
    logits, y = rng.uniform(-3, 3, (50, 10)), rng.integers(0, 10, 50)
    config = signals.SoftMarginTaylor(temperature=2.0, margin=0.6, terms=40)
    z = logits / 2.0
    z[np.arange(50), y] -= 0.6
    np.testing.assert_allclose(signals.taylor_soft_margin(logits, y, config), softmax(z, axis=1)[np.arange(50), y],
                               rtol=1e-9)
    # the reference's 4 terms, written out for one example
    row, label = logits[0], y[0]
    cubic = lambda x: 1 + x + x ** 2 / 2 + x ** 3 / 6  # noqa: E731
    true = cubic(row[label] / 2 - 0.6)
    others = sum(cubic(v / 2) for k, v in enumerate(row) if k != label)
    assert signals.taylor_soft_margin(logits[:1], y[:1])[0] == pytest.approx(true / (true + others), rel=1e-12)


def test_augmented_rmia_equals_its_majority_vote_written_out():
    """x dominates z when, on more than half of the queries, its ratio to the trimmed
    mean over references exceeds gamma times z's; the score is the share of z."""
    rng = np.random.default_rng(1)
    queries, refs, n_x, n_z = 3, 5, 40, 30
    target, ref = rng.uniform(0.05, 1, (queries, n_x)), rng.uniform(0.05, 1, (refs, queries, n_x))
    target_z, ref_z = rng.uniform(0.05, 1, (queries, n_z)), rng.uniform(0.05, 1, (refs, queries, n_z))
    config = ma.RmiaPaperAttack(gamma=1.5, trim=0.2)

    def trimmed(values):   # 20% of 5 references: the lowest and the highest dropped
        return np.sort(values, axis=0)[1:-1].mean(axis=0)

    ratio_x, ratio_z = target / trimmed(ref), target_z / trimmed(ref_z)
    expected = [np.mean([sum(ratio_x[k, i] > 1.5 * ratio_z[k, j] for k in range(queries)) >= 2
                         for j in range(n_z)]) for i in range(n_x)]
    np.testing.assert_allclose(ma.rmia_augmented(target, ref, target_z, ref_z, config, chunk=7), expected)
    # one query and no trimming: the single-query rule of privacy_meter's RMIA at that gamma
    single = ma.rmia_augmented(target[:1], ref[:, :1], target_z[:1], ref_z[:, :1],
                               ma.RmiaPaperAttack(gamma=1.5, trim=0))
    ratio = lambda t, r: t[0] / r[:, 0].mean(axis=0)  # noqa: E731
    np.testing.assert_allclose(single, [(ratio(target, ref)[i] > 1.5 * ratio(target_z, ref_z)).mean()
                                        for i in range(n_x)])


def test_the_bootstraps_weighted_figures_equal_the_figures_of_the_resampled_scores():
    """A bootstrap draw is counted as weights on the distinct scores, without a sort: it
    must give what auc_fast and tpr_at_fpr give on the drawn examples themselves."""
    rng = np.random.default_rng(2)
    is_member = rng.random(3000) < 0.5
    score = np.round(rng.normal(size=3000) + 0.7 * is_member, 1)      # many ties
    for _ in range(5):
        idx = rng.choice(3000, 3000)
        values, groups = np.unique(score, return_inverse=True)
        weight = np.bincount(idx, minlength=3000).astype(float)
        auc, tpr1, tpr01 = ma._weighted_figures(groups, len(values), is_member, weight, (0.01, 0.001))
        assert auc == pytest.approx(ma.auc_fast(score[idx], is_member[idx]), abs=1e-12)
        for fpr, tpr in ((0.01, tpr1), (0.001, tpr01)):
            tp, members, _, _ = ma.tpr_at_fpr(score[idx], is_member[idx], fpr)
            assert tpr == pytest.approx(tp / members, abs=1e-12)
