"""Every figure and Markdown table of a results folder made again from its CSVs and
logs, running nothing (tools/redraw_results.py)."""
import csv
from pathlib import Path

from fashion_defenses.data import PROTOCOLS
from fashion_defenses.defenses import certificates
from fashion_defenses.evaluation.figures import draw_figures
from fashion_defenses.evaluation.report import evaluated_from_csv, mia_results, numeric_rows
from fashion_defenses.experiments import attacks
from fashion_defenses.experiments import certified_robustness as cr
from fashion_defenses.experiments import input_preprocessing as ip
from fashion_defenses.experiments import runtime_adversarial_training as rat
from fashion_defenses.reporting import atomic_write_text, csv_text


def redraw_figures(results_dir):
    """The figures drawn from a results CSV, again from that CSV (make readme): a figure
    fixed after a run is redrawn from that run's numbers, without re-running it. Only
    figures a run drew are redrawn."""
    results_dir = Path(results_dir)
    for protocol_name, protocol in PROTOCOLS.items():
        drawers = {
            (f"attacks_{protocol_name}", ".png"):
                lambda rows, png: attacks.plot_accuracy_vs_eps(rows, attacks.plot_title(protocol, int(rows[0]["n"])),
                                                               png),
            (f"input_preprocessing_{protocol_name}", "_eps.png"):
                lambda rows, png: ip.plot_accuracy_vs_eps(rows, ip.PLOT_TITLE, png),
            (f"adversarial_training_{protocol_name}", "_clean_vs_robust.png"):
                lambda rows, png: rat.plot_clean_vs_robust(rows, *rat.CLEAN_VS_ROBUST, png),
            (f"adversarial_training_{protocol_name}_epochs", ".png"):
                lambda rows, png: rat.plot_epoch_logs(rows, rat.EPOCHS_TITLE.format(protocol_name), png)}
        for (stem, ending), draw in drawers.items():
            table, figure = results_dir / f"{stem}.csv", results_dir / f"{stem}{ending}"
            if table.exists() and figure.exists():
                draw(numeric_rows(table), figure)
        table = results_dir / f"evaluation_{protocol_name}.csv"
        if table.exists():
            evaluated = evaluated_from_csv(table)
            eps_grid = sorted({r["eps"] for _, rows in evaluated for r in rows if r["attack"] == "worst case"})
            draw_figures(evaluated, eps_grid, mia_results(results_dir, protocol_name), protocol_name,
                         table.with_suffix(""))
    redraw_certified(results_dir)


def certified_logs(results_dir):
    """{sigma: (certification log rows, the largest radius their n certifies)} of the
    smoothed standard CNNs certified in results_dir."""
    logs = {sigma: certificates.certified_log_rows(results_dir,
                                                   certificates.noise_model_name(PROTOCOLS["standard"], sigma), sigma)
            for sigma in certificates.SIGMAS}
    return {sigma: found for sigma, found in logs.items() if found[0] is not None}


def recheck_certificates(results_dir):
    """The empirical table's certified_acc and violation columns again from the
    certification logs, by today's certificate_check: a table a run judged by an older
    check reads as a new run's would. Every other column stays as the run wrote it."""
    table = Path(results_dir) / "certified_robustness_empirical.csv"
    if not table.exists():
        return
    text = table.read_text()
    rows = list(csv.DictReader(text.splitlines()))
    for sigma, (log, cap) in certified_logs(results_dir).items():
        for r in rows:
            if r["model"] == certificates.smoothed_label(sigma):
                certified, violated = certificates.certificate_check(
                    {"radius": float(r["radius"]), "ci_high": float(r["ci_high"])}, log, cap)
                r["certified_acc"], r["violation"] = str(certified), str(violated)
    if csv_text(rows) != text:
        atomic_write_text(table, csv_text(rows))


def redraw_certified(results_dir):
    """certified_accuracy.png again from the certification logs (the largest n per
    sigma, at the default alpha) and the empirical table."""
    figure, table = results_dir / "certified_accuracy.png", results_dir / "certified_robustness_empirical.csv"
    found = certified_logs(results_dir)
    if not (figure.exists() and table.exists() and found):
        return
    logs, caps = {sigma: rows for sigma, (rows, _) in found.items()}, {sigma: cap for sigma, (_, cap) in found.items()}
    empirical = numeric_rows(table)
    for r in empirical:
        r["radius"] = float(r["radius"])
    title = cr.curves_title(PROTOCOLS["standard"].name, len(next(iter(logs.values()))))
    cr.plot_curves(logs, empirical, caps, title, figure)
