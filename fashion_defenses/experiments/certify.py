"""The certification's compute (what certify.py runs, one pipeline job each; standard
protocol only), none of its tables' code: one sigma's certificates on a shard of the
images, PREDICT at each n of PREDICT_NS on them, and the empirical L2 attack beside
the certificate. Each writes its own file in <results>/certify/; certified_robustness.py
--merge makes the tables and the plot from them."""
import json
from pathlib import Path

from fashion_defenses.data import attack_subset, load_data
from fashion_defenses.defenses.certificates import (
    RADII,
    certify_log_path,
    noise_model_name,
    shard_range,
    smoothed_label,
)
from fashion_defenses.defenses.smoothing import Smooth, certify_images, empirical_rows, get_noise_model, predict_n_rows
from fashion_defenses.errors import UserError
from fashion_defenses.models import base_classifier, get_base_model
from fashion_defenses.reporting import atomic_write_text, format_acc

PREDICT_NS = {"standard": (100, 1_000, 10_000), "quick": (20, 100, 1_000)}   # the n that the PREDICT-n table compares


def default_samples(quick, sigma):
    """CERTIFY's n: 100,000 for sigma 0.25 (Cohen et al.'s), 10,000 for the others."""
    return 1000 if quick else (100_000 if sigma == 0.25 else 10_000)


def certified_images(ctx, n_images):
    """The data and the test-set indices of the images certified (the first n_images
    of the fixed attack order)."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    return data, attack_subset(len(data.y_test), n_images)


def shard_log_path(results_dir, protocol, sigma, n, shard):
    """Where shard i of k of one sigma's certificates goes: <certify>/shards/, apart from
    the joined logs the evaluation reads (certified_robustness.py --merge joins them)."""
    path = certify_log_path(results_dir, noise_model_name(protocol, sigma), sigma, n)
    return path.parent / "shards" / f"{path.stem}.shard{shard[0]}of{shard[1]}.tsv"


def certify_sigma(ctx, sigma, n_images, n0, n, alpha, shard=None, retrain=False):
    """CERTIFY (Cohen et al.) on the images, or on shard (i, k) of them, one resumable log
    row per image; returns the log's path."""
    data, indices = certified_images(ctx, n_images)
    n = n or default_samples(ctx.quick, sigma)
    base = base_classifier(get_noise_model(ctx, sigma, data, retrain)[0])
    path = certify_log_path(ctx.results_dir, noise_model_name(ctx.protocol, sigma), sigma, n)
    if shard:
        path, indices = shard_log_path(ctx.results_dir, ctx.protocol, sigma, n, shard), shard_range(indices, shard)
    elif retrain and path.exists():   # the log certified the old model
        path.unlink()
    print(f"certifying {len(indices)} images, sigma {sigma:g}, n0 {n0}, n {n:,}, alpha {alpha}")
    certify_images(Smooth(base, sigma), data.x_test, data.y_test, indices, path, n0, n, alpha, ctx.seed)
    print(f"wrote {path}")
    return path


def predict_n_path(results_dir, sigma):
    return Path(results_dir) / "certify" / f"predict_n_sigma{sigma:g}.json"


def empirical_path(results_dir, sigma):
    return Path(results_dir) / "certify" / f"empirical_sigma{sigma:g}.json"


def write_rows(path, rows):
    """A job's rows as JSON (numbers stay numbers), for the report to read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(rows, indent=1) + "\n")
    print(f"wrote {path}")


def read_rows(path, job):
    """The rows a job wrote; a clear error when it has not run."""
    if not Path(path).exists():
        raise UserError(f"no {path}: run {job} first (or certified_robustness.py without --merge)")
    return json.loads(Path(path).read_text())

def predict_n_sigma(ctx, sigma, n_images):
    """PREDICT (abstention wrong) at each n of PREDICT_NS on the certified images, clean
    and under PGD-20 through the soft smoothed classifier: one sigma's rows of the
    PREDICT-n table."""
    data, indices = certified_images(ctx, n_images)
    ns = PREDICT_NS["quick" if ctx.quick else "standard"]
    print(f"PREDICT at n = {', '.join(map(str, ns))} on {len(indices)} images, sigma {sigma:g}")
    base = base_classifier(get_noise_model(ctx, sigma, data)[0])
    rows = predict_n_rows(base, sigma, data.x_test[indices], data.y_test[indices], ns, ctx.seed)
    for r in rows:
        print(f"  n {r['draws']:>6,} {r['measure']}: {format_acc(r)}, abstains {100 * r['abstain_rate']:.1f}%")
    write_rows(predict_n_path(ctx.results_dir, sigma), rows)


def empirical_sigma(ctx, sigma, n_images):
    """L2 PGD-20 at each radius of RADII on the certified images against the undefended
    CNN, the noise-trained CNN without smoothing and the smoothed classifier (judged by
    PREDICT): what the certificate is set beside."""
    data, indices = certified_images(ctx, n_images)
    x, y = data.x_test[indices], data.y_test[indices]
    noise_base = base_classifier(get_noise_model(ctx, sigma, data)[0])
    rows = empirical_rows("undefended CNN", get_base_model(ctx, data)[0], x, y, RADII, ctx.seed)
    rows += empirical_rows(f"noise-trained CNN sigma {sigma:g}, no smoothing", noise_base, x, y, RADII, ctx.seed)
    rows += empirical_rows(smoothed_label(sigma), noise_base, x, y, RADII, ctx.seed, sigma=sigma)
    write_rows(empirical_path(ctx.results_dir, sigma), rows)
