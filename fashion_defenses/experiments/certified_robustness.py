"""The certification stage (what certified_robustness.py runs; standard protocol only):
noise-trained CNNs certified on 500 test images (Cohen et al. 2019), the empirical L2
attack beside each certificate and PREDICT at each n (experiments.certify: the
pipeline's jobs, shards included), then the certified-accuracy table and curves, the
empirical table and the PREDICT-n table that chooses the n the evaluation judges
smoothed classifiers with."""
import os

import numpy as np

from fashion_defenses.attacks import suite
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
    smallest_stable_n,
    smoothed_label,
)
from fashion_defenses.errors import UserError
from fashion_defenses.experiments import certify
from fashion_defenses.reporting import (
    accuracy_ci,
    error_bars,
    format_acc,
    pct,
    pyplot,
    save_figure,
    write_table,
)


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


def join_shards(path):
    """Join the shard logs of path's certificates (certify.py --shard, in <certify>/shards/)
    into path; returns how many images it holds."""
    staged = path.parent / "shards" / path.name
    if not list(staged.parent.glob(f"{path.stem}.shard*of*.tsv")):
        raise UserError(f"no shard of {path.name} in {staged.parent}: run certify.py on every shard first")
    count = merge_shards(staged)       # the shards beside it, joined into it
    os.replace(staged, path)
    return count


def empirical_table(sigma, certified_rows, cap, rows):
    """The empirical L2 attack's rows (certify.py --empirical) beside the certificate:
    the smoothed classifier must never fall significantly below its certified accuracy."""
    for r in rows:
        r["certified_acc"], r["violation"] = (certificate_check(r, certified_rows, cap)
                                              if r["model"] == smoothed_label(sigma) else ("", ""))
        if r["violation"]:
            print(f"  WARNING: empirical {format_acc(r)} below certified {100 * r['certified_acc']:.1f}% "
                  f"at radius {r['radius']:g}")
    return rows


def predict_n_table(ctx, sigmas, images, rows_of):
    """The PREDICT-n table from each sigma's rows (certify.py --predict-n), and the
    smallest n that the rule of smallest_stable_n accepts (written in the table's note;
    the evaluation judges with PREDICT_N, and a run says so where the two differ)."""
    rows, chosen, loose = [], {}, {}
    for sigma in sigmas:
        sigma_rows = rows_of[sigma]
        chosen[sigma], loose[sigma] = smallest_stable_n(sigma_rows, PREDICT_SHIFT), smallest_stable_n(sigma_rows)
        rows += sigma_rows
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
                title=f"PREDICT (Cohen et al.; abstention wrong) at each n on the {images} certified test images, "
                      f"clean and under PGD-20 (L-inf {suite.HEADLINE_EPS:g}, {suite.EOT_DRAWS} noise draws per "
                      f"gradient), seed {ctx.seed} (exact 95% intervals)")


def run_certification(ctx, sigmas, n_images, n0, n, alpha, merge=False, retrain=False):
    """Certify every sigma, then measure the empirical attack beside the certificate and
    PREDICT at each n (experiments.certify, the pipeline's jobs); with merge, none of
    that: the shard logs are joined and the jobs' files read. Then the tables and plot."""
    chosen = 0.25 if 0.25 in sigmas else sigmas[0]
    if not merge:
        for sigma in sigmas:
            certify.certify_sigma(ctx, sigma, n_images, n0, n, alpha, retrain=retrain)
        certify.empirical_sigma(ctx, chosen, n_images)
        for sigma in sigmas:
            certify.predict_n_sigma(ctx, sigma, n_images)
    data, indices = certify.certified_images(ctx, n_images)
    logs, caps, table = {}, {}, []
    for sigma in sigmas:
        n_sigma = n or certify.default_samples(ctx.quick, sigma)
        path = certify_log_path(ctx.results_dir, noise_model_name(ctx.protocol, sigma), sigma, n_sigma)
        if merge:
            print(f"joined {join_shards(path)} images into {path}")
        logs[sigma] = [r for r in read_log(path) if int(r["idx"]) in set(indices.tolist())]
        if len(logs[sigma]) < len(indices):
            raise UserError(f"{path} certifies {len(logs[sigma])} of the {len(indices)} images: run certify.py "
                            f"--sigma {sigma:g} on every shard first")
        caps[sigma] = max_certifiable_radius(n_sigma, alpha, sigma)
        table += certified_table(ctx, sigma, n0, n_sigma, alpha, logs[sigma])
    job = f"certify.py --sigma {chosen:g} --empirical"
    empirical = empirical_table(chosen, logs[chosen], caps[chosen],
                                certify.read_rows(certify.empirical_path(ctx.results_dir, chosen), job))
    write_table(empirical, ctx.results_dir / "certified_robustness_empirical",
                title=f"Empirical L2 robustness on the same {len(indices)} images (exact 95% intervals)")
    plot_curves(logs, empirical, caps, curves_title(ctx.protocol.name, len(indices)),
                ctx.results_dir / "certified_accuracy.png")
    predict_n_table(ctx, sigmas, len(indices), {s: certify.read_rows(certify.predict_n_path(ctx.results_dir, s),
                                                                     f"certify.py --sigma {s:g} --predict-n")
                                                for s in sigmas})
    # the stage's make target, so written last: a run killed before it redoes the stage
    write_table(table, ctx.results_dir / "certified_robustness", markdown_rows=certified_pivot(table),
                title=f"Certified accuracy (%) of the smoothed {ctx.protocol.architecture} at each L2 radius r, "
                      f"{len(indices)} test images, {ctx.protocol.name} protocol, seed {ctx.seed}, n0 {n0}, "
                      f"alpha {alpha:g} (exact 95% intervals; abstentions count as wrong)",
                note="n/a: beyond the largest radius n samples can certify at this alpha (sigma x "
                     "PhiInv(alpha^(1/n))), where every image would count as 0% whatever the classifier.")
    print(f"wrote {ctx.results_dir / 'certified_robustness.csv'}, ..._empirical.csv, ..._predict_n.csv, "
          "certified_accuracy.png")
