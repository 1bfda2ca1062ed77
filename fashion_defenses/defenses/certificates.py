"""Randomized smoothing's statistics and logs, without TensorFlow: the
Clopper-Pearson bound and certified radius of Cohen et al. (2019), the per-image
certification log (locuslab/smoothing's columns), its shards, and what a log certifies."""
from pathlib import Path

from scipy.stats import beta, norm

from fashion_defenses.errors import UserError
from fashion_defenses.reporting import accuracy_ci, atomic_write_text

ABSTAIN = -1

SIGMAS = (0.12, 0.25, 0.5)

RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)

TSV_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time", "nA", "n")

CERTIFY_ALPHA = 0.001   # each certificate's failure probability (Cohen et al.'s)


def check_parameters(sigma=None, n0=None, n=None, alpha=None):
    """Reject impossible settings with a clear message."""
    if sigma is not None and not sigma > 0:
        raise UserError(f"sigma must be > 0, got {sigma}")
    if n0 is not None and n is not None and n0 > n:
        raise UserError(f"n0 ({n0}) must not exceed n ({n})")
    if alpha is not None and not 0 < alpha < 1:
        raise UserError(f"alpha must lie in (0, 1), got {alpha}")


def lower_confidence_bound(n_a, n, alpha):
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion."""
    return 0.0 if n_a == 0 else float(beta.ppf(alpha, n_a, n - n_a + 1))


def certified_radius(n_a, n, alpha, sigma):
    """(pA_lower, radius); radius is None (abstain) when pA_lower < 1/2."""
    p_lower = lower_confidence_bound(n_a, n, alpha)
    return p_lower, (sigma * float(norm.ppf(p_lower)) if p_lower >= 0.5 else None)


def max_certifiable_radius(n, alpha, sigma):
    """The radius when all n samples agree: sigma * PhiInv(alpha ** (1 / n))."""
    return sigma * float(norm.ppf(alpha ** (1.0 / n)))


def read_log(path):
    """Rows of a certification TSV; a torn last line (a killed run) is cut off."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        path.write_text(text)
    lines = text.splitlines()
    if not lines:
        return []
    if tuple(lines[0].split("\t")) != TSV_COLUMNS:
        raise UserError(f"{path} is not a certification log (header {lines[0]!r})")
    return [dict(zip(TSV_COLUMNS, line.split("\t"))) for line in lines[1:]]


def shard_range(indices, shard):
    """The contiguous block of indices of shard 'i/k' (i from 1 to k)."""
    i, k = shard
    size = -(-len(indices) // k)
    return indices[(i - 1) * size:i * size]


def merge_shards(path):
    """Join path's shard logs (<stem>.shard<i>of<k>.tsv) into path, sorted by idx."""
    rows = {int(r["idx"]): r for r in read_log(path)}
    for shard in sorted(path.parent.glob(f"{path.stem}.shard*of*.tsv")):
        rows.update({int(r["idx"]): r for r in read_log(shard)})
    lines = ["\t".join(TSV_COLUMNS)] + ["\t".join(rows[i][c] for c in TSV_COLUMNS) for i in sorted(rows)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(rows)


def certified_accuracy(rows, radius):
    """Correct and certified at radius >= r (abstentions count as wrong)."""
    return accuracy_ci([int(r["correct"]) == 1 and float(r["radius"]) >= radius for r in rows])


def certify_log_path(results_dir, model_name, sigma, n):
    """The per-image certification log of one model, sigma and n."""
    return Path(results_dir) / "certify" / f"{model_name}_sigma{sigma:g}_n{n}.tsv"


def largest_certify_log(results_dir, model_name, sigma):
    """The certification log of a model and sigma with the largest n; None if none."""
    logs = Path(results_dir, "certify").glob(certify_log_path(results_dir, model_name, sigma, "*").name)
    logs = sorted(logs, key=lambda p: int(p.stem.rsplit("_n", 1)[1]))
    return logs[-1] if logs else None


def certified_log_rows(results_dir, model_name, sigma):
    """(rows, the largest radius their n certifies at the default alpha) of the log with
    the largest n; (None, None) if the model was not certified at sigma."""
    log = largest_certify_log(results_dir, model_name, sigma)
    rows = read_log(log) if log else []
    if not rows:
        return None, None
    return rows, max_certifiable_radius(int(rows[0]["n"]), CERTIFY_ALPHA, sigma)


PREDICT_ALPHA = 0.001   # Cohen et al.'s predict.py

# noise draws per PREDICT in the evaluation. predict_n_table shows how far its figures lie
# below those at 10x the draws (abstentions count wrong, so they err low); 10,000 would
# judge clean accuracy on 10,000 test and 10,000 training images with 2e8 forward passes
# per sigma, some 3 h on 2 CPU cores (about 19,000 images/s)
PREDICT_N = 1000

PREDICT_SHIFT = 0.01   # a figure may move this much (1 point) when PREDICT's n grows tenfold


def smallest_stable_n(rows, tolerance=None):
    """The smallest n (PREDICT's draws) whose every figure moves by at most `tolerance`
    at the next larger n measured; tolerance None: by at most half that n's 95% interval
    width. The largest n measured if none does. The interval of a few hundred images is
    wider than the one-sided shift that abstentions cause, so the n the table chooses follows the
    fixed tolerance PREDICT_SHIFT; the table's note gives both."""
    ns = sorted({r["draws"] for r in rows})
    figure = {(r["draws"], r["measure"]): r for r in rows}

    def stays(n, larger, measure):
        now, then = figure[(n, measure)], figure[(larger, measure)]
        allowed = tolerance if tolerance is not None else (then["ci_high"] - then["ci_low"]) / 2
        return abs(now["acc"] - then["acc"]) <= allowed
    for n, larger in zip(ns, ns[1:]):
        if all(stays(n, larger, m) for m in {r["measure"] for r in rows}):
            return n
    return ns[-1]


def certificate_check(row, certified_rows, cap):
    """(certified accuracy, violated) at an empirical row's radius: the smoothed
    classifier's accuracy under attack must not lie significantly below what is
    certified there (its exact 95% upper bound below it; PREDICT's abstentions make a
    small shortfall no violation). At radius 0 (PREDICT against CERTIFY's own
    abstentions) and beyond what n can certify there is nothing to check: ("", "")."""
    if not 0 < row["radius"] <= cap:
        return "", ""
    certified = certified_accuracy(certified_rows, row["radius"])["acc"]
    return round(certified, 4), bool(row["ci_high"] < certified)


def smoothed_label(sigma):
    """The empirical table's name for the smoothed classifier at sigma."""
    return f"smoothed sigma {sigma:g}"


def noise_model_name(protocol, sigma):
    return f"{protocol.architecture}_noise{sigma:g}"
