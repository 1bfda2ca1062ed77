"""The certification stage (what certified_robustness.py runs; standard protocol only):
noise-trained CNNs certified on 500 test images (Cohen et al. 2019), one resumable log
row per image and shards that machines certify apart, the certified-accuracy table and
curves, the empirical L2 attack beside each certificate, and the PREDICT-n table that
chooses the n the evaluation judges smoothed classifiers with."""
import numpy as np

from fashion_defenses.attacks import suite
from fashion_defenses.data import attack_subset, load_data
from fashion_defenses.defenses.certificates import (
    ABSTAIN,
    PREDICT_ALPHA,
    PREDICT_N,
    PREDICT_SHIFT,
    RADII,
    certificate_check,
    certified_accuracy,
    certify_log_path,
    max_certifiable_radius,
    merge_shards,
    noise_model_name,
    read_log,
    shard_range,
    smallest_stable_n,
    smoothed_label,
)
from fashion_defenses.defenses.smoothing import Smooth, certify_images, empirical_rows, get_noise_model, predict_n_rows
from fashion_defenses.models import base_classifier, get_base_model
from fashion_defenses.reporting import accuracy_ci, error_bars, format_acc, pct, pyplot, save_figure, write_table


def curves_title(protocol_name, images):
    return f"Randomized smoothing, {protocol_name} protocol ({images} images)"


def plot_curves(logs, empirical, caps, title, path):
    """Certified accuracy against the L2 radius per sigma (solid, up to what n can
    certify) and L2 PGD-20's accuracy at the radii it was run at (markers)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.linspace(0, 2.5, 101)
    for i, (sigma, rows) in enumerate(logs.items()):
        color = f"C{i}"
        reach = grid[grid <= caps[sigma]]   # beyond the cap n samples certify nothing: no curve, not 0%
        ax.plot(reach, [100 * certified_accuracy(rows, r)["acc"] for r in reach], color=color,
                label=f"certified, sigma {sigma:g} ({len(rows)} images)")
        ax.axvline(caps[sigma], color=color, ls="--", lw=0.8, alpha=0.6)
    for j, label in enumerate(dict.fromkeys(r["model"] for r in empirical)):
        sel = [r for r in empirical if r["model"] == label]
        ax.errorbar([r["radius"] for r in sel], [100 * r["acc"] for r in sel], fmt="s:", lw=1, ms=4, capsize=2,
                    color=f"C{j + len(logs)}", label=f"L2 PGD-20: {label}", yerr=error_bars(sel))
    ax.set(xlabel="L2 radius (pixels in [0, 1]); dashed: the largest radius the chosen n can certify",
           ylabel="accuracy (%)", ylim=(0, 100), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    save_figure(fig, path)


def default_samples(quick, sigma):
    """CERTIFY's n: 100,000 for sigma 0.25 (Cohen et al.'s), 10,000 for the others."""
    return 1000 if quick else (100_000 if sigma == 0.25 else 10_000)


def certify_shard(ctx, sigmas, n_images, shard, n0, n, alpha):
    """Certify block i of k of the images (one machine of k); --merge joins them."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    indices = attack_subset(len(data.y_test), n_images)
    for sigma in sigmas:
        n_sigma = n or default_samples(ctx.quick, sigma)
        base = base_classifier(get_noise_model(ctx, sigma, data)[0])
        path = certify_log_path(ctx.results_dir, noise_model_name(ctx.protocol, sigma), sigma, n_sigma)
        shard_path = path.with_name(f"{path.stem}.shard{shard[0]}of{shard[1]}.tsv")
        certify_images(Smooth(base, sigma), data.x_test, data.y_test, shard_range(indices, shard),
                       shard_path, n0, n_sigma, alpha, ctx.seed)
        print(f"wrote {shard_path}; run --merge once every shard is done")


def certified_table(ctx, sigma, n0, n, alpha, rows):
    """Certified accuracy at each radius of RADII from one sigma's log."""
    model = noise_model_name(ctx.protocol, sigma)
    abstain = accuracy_ci([int(r["predict"]) == ABSTAIN for r in rows])
    table = []
    for radius in RADII:
        stats = certified_accuracy(rows, radius)
        table.append({"protocol": ctx.protocol.name, "model": model, "sigma": sigma, "n0": n0, "n_samples": n,
                      "alpha": alpha, "radius": radius, **stats, "abstain_rate": round(abstain["acc"], 4),
                      "max_certifiable_radius": round(max_certifiable_radius(n, alpha, sigma), 3),
                      "mean_seconds_per_image": round(float(np.mean([float(r["time"]) for r in rows])), 3)})
        print(f"  sigma {sigma:g}, radius {radius:.2f}: certified {format_acc(stats)}")
    return table


def certified_pivot(table):
    """Certified accuracy as locuslab/smoothing lays it out: one row per sigma, one column
    per radius, '%' with its exact interval; 'n/a' beyond the largest radius that n
    samples can certify (0% there says nothing about the classifier)."""
    out = []
    for sigma in dict.fromkeys(r["sigma"] for r in table):
        rows = [r for r in table if r["sigma"] == sigma]
        first = rows[0]
        row = {"sigma": f"{sigma:g}", "n (CERTIFY samples)": f"{first['n_samples']:,}",
               "largest certifiable radius": f"{first['max_certifiable_radius']:.2f}",
               "abstains": f"{100 * first['abstain_rate']:.1f}%"}
        for r in rows:
            beyond = r["radius"] > first["max_certifiable_radius"]
            row[f"r = {r['radius']:g}"] = "n/a" if beyond else pct(r)
        out.append(row)
    return out


def empirical_table(ctx, data, x, y, sigma, certified_rows, cap):
    """Empirical L2 robustness beside the certificate: the undefended CNN, the
    noise-trained CNN without smoothing, and the smoothed classifier, which must
    never fall significantly below its certified accuracy."""
    empirical = empirical_rows("undefended CNN", get_base_model(ctx, data)[0], x, y, RADII, ctx.seed)
    noise_base = base_classifier(get_noise_model(ctx, sigma, data)[0])
    empirical += empirical_rows(f"noise-trained CNN sigma {sigma:g}, no smoothing", noise_base, x, y, RADII, ctx.seed)
    empirical += empirical_rows(smoothed_label(sigma), noise_base, x, y, RADII, ctx.seed, sigma=sigma)
    for r in empirical:
        r["certified_acc"], r["violation"] = (certificate_check(r, certified_rows, cap)
                                              if r["model"] == smoothed_label(sigma) else ("", ""))
        if r["violation"]:
            print(f"  WARNING: empirical {format_acc(r)} below certified {100 * r['certified_acc']:.1f}% "
                  f"at radius {r['radius']:g}")
    return empirical


PREDICT_NS = {"standard": (100, 1_000, 10_000), "quick": (20, 100, 1_000)}   # the n that predict_n_table compares


def predict_n_table(ctx, data, sigmas, indices):
    """PREDICT at each n of PREDICT_NS on the certified images, for every sigma, and the
    smallest n that the rule of smallest_stable_n accepts (written in the table's note;
    the evaluation judges with PREDICT_N, and a run says so where the two differ)."""
    ns = PREDICT_NS["quick" if ctx.quick else "standard"]
    x, y = data.x_test[indices], data.y_test[indices]
    rows, chosen, loose = [], {}, {}
    for sigma in sigmas:
        print(f"PREDICT at n = {', '.join(map(str, ns))} on {len(y)} images, sigma {sigma:g}")
        base = base_classifier(get_noise_model(ctx, sigma, data)[0])
        sigma_rows = predict_n_rows(base, sigma, x, y, ns, ctx.seed)
        chosen[sigma], loose[sigma] = smallest_stable_n(sigma_rows, PREDICT_SHIFT), smallest_stable_n(sigma_rows)
        rows += sigma_rows
        for r in sigma_rows:
            print(f"  n {r['draws']:>6,} {r['measure']}: {format_acc(r)}, abstains {100 * r['abstain_rate']:.1f}%")
    needed = max(chosen.values())
    note = (f"The smallest n whose figures move by at most {100 * PREDICT_SHIFT:g} point at the next larger n: "
            + ", ".join(f"sigma {s:g}: {n:,}" for s, n in chosen.items()) +
            " (by at most half the next n's 95% interval width, a yardstick wider than the one-sided shift of "
            "abstentions: " + ", ".join(f"sigma {s:g}: {n:,}" for s, n in loose.items()) +
            f"). The evaluation judges every smoothed classifier with PREDICT at n {PREDICT_N:,}, alpha "
            f"{PREDICT_ALPHA:g}" + ("." if needed <= PREDICT_N else
                                   f", less than this run's measurement asks for ({needed:,})."))
    if needed > PREDICT_N and not ctx.quick:
        print(f"WARNING: PREDICT_N ({PREDICT_N:,}) is below the n this measurement chooses ({needed:,})")
    write_table(rows, ctx.results_dir / "certified_robustness_predict_n", note=note,
                title=f"PREDICT (Cohen et al.; abstention wrong) at each n on the {len(y)} certified test images, "
                      f"clean and under PGD-20 (L-inf {suite.HEADLINE_EPS:g}, {suite.EOT_DRAWS} noise draws per "
                      f"gradient), seed {ctx.seed} (exact 95% intervals)")


def run_certification(ctx, sigmas, n_images, n0, n, alpha, merge=False, retrain=False):
    """Certify (or, with merge, join the shard logs of) every sigma; then the tables,
    the empirical attack beside the certificate, and the plot."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    indices = attack_subset(len(data.y_test), n_images)
    logs, caps, table = {}, {}, []
    for sigma in sigmas:
        n_sigma = n or default_samples(ctx.quick, sigma)
        base = base_classifier(get_noise_model(ctx, sigma, data, retrain)[0])
        path = certify_log_path(ctx.results_dir, noise_model_name(ctx.protocol, sigma), sigma, n_sigma)
        if retrain and path.exists():   # the log certified the old model
            path.unlink()
        if merge:
            print(f"merged {merge_shards(path)} images into {path}")
        else:
            print(f"certifying {len(indices)} images, sigma {sigma:g}, n0 {n0}, n {n_sigma:,}, alpha {alpha}")
            certify_images(Smooth(base, sigma), data.x_test, data.y_test, indices, path, n0, n_sigma, alpha, ctx.seed)
        logs[sigma] = [r for r in read_log(path) if int(r["idx"]) in set(indices.tolist())]
        caps[sigma] = max_certifiable_radius(n_sigma, alpha, sigma)
        table += certified_table(ctx, sigma, n0, n_sigma, alpha, logs[sigma])
    x, y = data.x_test[indices], data.y_test[indices]
    chosen = 0.25 if 0.25 in logs else sigmas[0]
    empirical = empirical_table(ctx, data, x, y, chosen, logs[chosen], caps[chosen])
    write_table(empirical, ctx.results_dir / "certified_robustness_empirical",
                title=f"Empirical L2 robustness on the same {len(y)} images (exact 95% intervals)")
    plot_curves(logs, empirical, caps, curves_title(ctx.protocol.name, len(indices)),
                ctx.results_dir / "certified_accuracy.png")
    predict_n_table(ctx, data, sigmas, indices)
    # the stage's make target, so written last: a run killed before it redoes the stage
    write_table(table, ctx.results_dir / "certified_robustness", markdown_rows=certified_pivot(table),
                title=f"Certified accuracy (%) of the smoothed {ctx.protocol.architecture} at each L2 radius r, "
                      f"{len(indices)} test images, {ctx.protocol.name} protocol, seed {ctx.seed}, n0 {n0}, "
                      f"alpha {alpha:g} (exact 95% intervals; abstentions count as wrong)",
                note="n/a: beyond the largest radius n samples can certify at this alpha (sigma x "
                     "PhiInv(alpha^(1/n))), where every image would count as 0% whatever the classifier.")
    print(f"wrote {ctx.results_dir / 'certified_robustness.csv'}, ..._empirical.csv, ..._predict_n.csv, "
          "certified_accuracy.png")
