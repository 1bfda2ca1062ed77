"""Every plot function draws a PNG from small made-up results without error."""
import numpy as np

from fashion_defenses.defenses import certificates
from fashion_defenses.defenses.catalogue import Defense
from fashion_defenses.evaluation import figures, report
from fashion_defenses.evaluation import rows as rows_of
from fashion_defenses.evaluation.core import Settings
from fashion_defenses.experiments import attacks, redraw
from fashion_defenses.experiments import certified_robustness as cr
from fashion_defenses.experiments import input_preprocessing as ip
from fashion_defenses.experiments import runtime_adversarial_training as rat
from fashion_defenses.experiments.model import plot_training_curve
from fashion_defenses.privacy import report as mi
from fashion_defenses.reporting import pyplot, save_figure

SETTINGS = Settings(n_attack=100, n_attack_randomized=100, eps_grid=(0.05, 0.1), l2_radii=(0.5,), draws=1, n_vote=10)


def stats(acc, n=100):
    return {"n": n, "acc": acc, "ci_low": max(acc - 0.05, 0), "ci_high": min(acc + 0.05, 1)}


def evaluation_rows(level):
    return [{"attack": "clean", "norm": "-", "eps": 0.0, "images": "test set", **stats(0.9)},
            {"attack": "benign", "norm": "-", "eps": 0.0, "images": "100 fixed", **stats(0.9)},
            {"attack": "PGD-20", "norm": "linf", "eps": 0.05, "images": "100 fixed", **stats(level + 0.1)},
            {"attack": "PGD-20", "norm": "linf", "eps": 0.1, "images": "100 fixed", **stats(level)},
            {"attack": "worst case", "norm": "linf", "eps": 0.05, "images": "100 fixed", **stats(level + 0.1)},
            {"attack": "worst case", "norm": "linf", "eps": 0.1, "images": "100 fixed", **stats(level)}]


def drawn(path, min_pixels=300):
    """A PNG with something plotted on it: at least min_pixels coloured pixels (the axes,
    ticks, grid and text are black, grey or white; every series here has a colour)."""
    if not path.exists():
        return False
    rgb = pyplot().imread(path)[..., :3]
    return int(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25).sum()) >= min_pixels


def test_an_empty_axes_is_not_drawn_and_one_short_line_is(tmp_path):
    """The check above can fail: labelled axes with no data fail it; one coloured line passes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.set(xlabel="eps", ylabel="accuracy (%)", title="nothing plotted", ylim=(0, 100))
    ax.grid(alpha=0.3)
    save_figure(fig, tmp_path / "empty.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([0, 0.1], [90, 10], color="C0", label="one defense")
    ax.legend()
    save_figure(fig, tmp_path / "line.png")
    assert not drawn(tmp_path / "empty.png") and drawn(tmp_path / "line.png")


def test_the_evaluation_plots(tmp_path):
    """(Look at them: pytest --basetemp=/tmp/plots keeps the PNGs.)"""
    kinds = ["undefended", "filter", "adversarial training", "randomized smoothing"] * 3   # 12 > 10 colours
    evaluated = [(Defense(f"defense {i}", kind, f"m{i}", train=None), evaluation_rows(i / 20))
                 for i, kind in enumerate(kinds)]
    mia_rows = {(f"m{i}", "rmia"): {"auc": 0.52, "auc_ci_low": 0.5, "auc_ci_high": 0.54,
                                                "tpr_at_1%_fpr": 0.012, "tpr_at_1%_fpr_ci_low": 0.008,
                                                "tpr_at_1%_fpr_ci_high": 0.017} for i in range(12)}
    figures.plot_pareto(evaluated, "pareto", tmp_path / "pareto.png")
    figures.plot_eps(evaluated, SETTINGS.eps_grid, "eps", tmp_path / "eps.png")
    figures.plot_privacy(evaluated, mia_rows, "privacy", tmp_path / "privacy.png")
    figures.plot_privacy(evaluated, {}, "no MIA yet", tmp_path / "privacy_empty.png")
    assert all(drawn(tmp_path / f"{name}.png") for name in ("pareto", "eps", "privacy"))
    assert (tmp_path / "privacy_empty.png").exists() and not drawn(tmp_path / "privacy_empty.png")  # says so in words
    styles = figures.defense_styles(evaluated)
    assert len({tuple(np.atleast_1d(s["color"])) for s in styles}) == 12   # no two defenses share a colour


def test_markers_at_one_point_become_rings_and_the_others_stay_as_they_are():
    styles = [{"label": name} for name in "abcd"]
    ringed = figures.ringed(styles, [(0.0, 74.7), (0.0, 74.7), (5.0, 80.0), (0.0, 74.7)])
    assert [s["ms"] for s in ringed] == [6, 11, 6, 16]
    assert "mfc" not in ringed[0] and "mfc" not in ringed[2] and ringed[1]["mfc"] == ringed[3]["mfc"] == "none"


def test_the_evaluation_figures_are_redrawn_from_the_csv(tmp_path):
    """make readme redraws them from evaluation_<protocol>.csv, without the models."""
    import csv
    fields = ["protocol", "defense", "kind", "model", "attack", "norm", "eps", "images", "n", "acc", "ci_low",
              "ci_high"]
    with open(tmp_path / "evaluation_paper.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for i, kind in enumerate(["undefended", "filter", "adversarial training"]):
            writer.writerows({"protocol": "paper", "defense": f"defense {i}", "kind": kind, "model": f"m{i}", **r}
                             for r in evaluation_rows(i / 10))
    evaluated = report.evaluated_from_csv(tmp_path / "evaluation_paper.csv")
    assert [d.label for d, _ in evaluated] == ["defense 0", "defense 1", "defense 2"]
    assert rows_of.find(evaluated[2][1], "worst case", 0.1)["acc"] == 0.2
    (tmp_path / "attacks_paper.csv").write_text(
        "protocol,attack,norm,eps,settings,n,acc,ci_low,ci_high\npaper,clean,-,0.0,,100,0.9,0.85,0.95\n"
        "paper,PGD-20,linf,0.05,s,100,0.3,0.2,0.4\npaper,PGD-20,linf,0.1,s,100,0.1,0.05,0.2\n"
        "paper,worst case,linf,0.05,s,100,0.3,0.2,0.4\npaper,worst case,linf,0.1,s,100,0.1,0.05,0.2\n"
        "paper,AutoAttack,linf,0.1,s,100,0.1,0.05,0.2\n")
    (tmp_path / "attacks_paper.png").write_bytes(b"")   # what the run drew: redrawn; what it did not: left
    redraw.redraw_figures(tmp_path)
    assert all(drawn(tmp_path / f"evaluation_paper_{name}.png") for name in ("pareto", "eps"))
    assert (tmp_path / "evaluation_paper_privacy.png").exists()       # no MIA table here: its panels say so
    assert drawn(tmp_path / "attacks_paper.png") and not (tmp_path / "input_preprocessing_paper_eps.png").exists()


def test_the_certified_figure_is_redrawn_from_the_logs(tmp_path):
    from fashion_defenses.data import PROTOCOLS
    redraw.redraw_certified(tmp_path)   # nothing drawn by a run: nothing to redraw, no error
    name = certificates.noise_model_name(PROTOCOLS["standard"], 0.25)
    log = certificates.certify_log_path(tmp_path, name, 0.25, 1000)
    log.parent.mkdir()
    log.write_text("\t".join(certificates.TSV_COLUMNS) + "\n" + "".join(f"{i}\t1\t1\t{0.1 * i:.4f}\t1\t0.1\t990\t1000\n"
                                                              for i in range(10)))
    (tmp_path / "certified_robustness_empirical.csv").write_text(
        "model,kind,radius,settings,n,acc,ci_low,ci_high,certified_acc,violation\n"
        "smoothed,e,0.0,,10,0.8,0.5,0.9,,\nsmoothed,e,0.5,s,10,0.6,0.3,0.8,0.5,False\n")
    (tmp_path / "certified_accuracy.png").write_bytes(b"")
    redraw.redraw_certified(tmp_path)
    assert drawn(tmp_path / "certified_accuracy.png")


def test_the_technique_plots(tmp_path):
    clean = {"protocol": "standard", "attack": "none (clean)", "norm": "-", "eps": 0.0, **stats(0.9)}
    rows = [clean] + [{"protocol": "standard", "attack": a, "norm": "linf", "eps": e, **stats(acc)}
                      for a, e, acc in (("FGSM", 0.05, 0.3), ("FGSM", 0.1, 0.1), ("PGD-100x2", 0.1, 0.0),
                                        ("margin", 0.1, 0.0))]
    attacks.plot_accuracy_vs_eps(rows, "attacks", tmp_path / "attacks.png")
    filter_rows = [{"filter": f, "variant": v, "attack": a, "eps": e, **stats(acc)}
                   for f in ("none", "dual") for v in (("undefended",) if f == "none" else ("trained", "test-time"))
                   for a, e, acc in (("benign", 0.0, 0.9), ("PGD-20 transfer", 0.1, 0.5), ("worst case", 0.1, 0.1))]
    ip.plot_accuracy_vs_eps(filter_rows, "filters", tmp_path / "filters.png")
    logs = {"run": [{"epoch": e, "clean_acc": 0.8, "pgd_acc": 0.1 * e} for e in (1, 2, 3)]}
    rat.plot_epoch_logs(rat.epoch_rows(logs, 500), "epochs", tmp_path / "epochs.png")
    at_rows = [{"model": "m", "method": "pgd", "filter": "none", "attack": a, **stats(acc)}
               for a, acc in (("clean", 0.85), ("PGD-20x2", 0.7))]
    rat.plot_clean_vs_robust(at_rows, "PGD-20x2", "clean vs robust", tmp_path / "clean_vs_robust.png")
    log = [{"idx": str(i), "label": "1", "predict": "1", "radius": f"{0.1 * i:.4f}", "correct": "1", "time": "0.1",
            "nA": "990", "n": "1000"} for i in range(10)]
    empirical = [{"model": "smoothed", "radius": r, **stats(0.8 - r / 2)} for r in (0.0, 0.5, 1.0)]
    cr.plot_curves({0.25: log}, empirical, {0.25: 0.6}, "certified", tmp_path / "certified.png")
    plot_training_curve({"loss": [2, 1], "val_loss": [2.1, 1.2], "accuracy": [0.5, 0.7], "val_accuracy": [0.5, 0.6]},
                        "curve", tmp_path / "curve.png", weight_penalty=True)
    rng = np.random.default_rng(0)
    is_member = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    scores = mi.scores_path(tmp_path, "standard", "m", "rmia")
    scores.parent.mkdir(parents=True)
    np.savez(scores, score=rng.normal(size=100), is_member=is_member, decision=is_member)
    mi.plot_roc(tmp_path, [{"protocol": "standard", "defense": "a model", "model": "m", "attack": "rmia", "auc": 0.5,
                            "n_nonmembers": 50}],
                "rmia", "ROC", tmp_path / "roc.png")
    for name in ("attacks", "filters", "epochs", "clean_vs_robust", "certified", "curve", "roc"):
        assert drawn(tmp_path / f"{name}.png"), name


def test_the_certificate_columns_are_judged_again_by_todays_check(tmp_path):
    """make readme re-derives the empirical table's certified_acc and violation from the
    certification log: an old run's radius-0 'violation' and its 0% beyond n's limit go,
    a real shortfall stays flagged, and every other cell is kept byte for byte."""
    from fashion_defenses.data import PROTOCOLS
    name = certificates.noise_model_name(PROTOCOLS["standard"], 0.25)
    log = certificates.certify_log_path(tmp_path, name, 0.25, 1000)
    log.parent.mkdir()
    log.write_text("\t".join(certificates.TSV_COLUMNS) + "\n" + "".join(f"{i}\t1\t1\t{0.1 * i:.4f}\t1\t0.1\t990\t1000\n"
                                                              for i in range(10)))
    header = "model,kind,radius,settings,n,acc,ci_low,ci_high,certified_acc,violation\n"
    kept = 'undefended CNN,"e, L2",0.5,s,10,0.6,0.3123456789,0.8,,\n'
    table = tmp_path / "certified_robustness_empirical.csv"
    table.write_text(header + kept +
                     "smoothed sigma 0.25,e,0.0,,10,0.8,0.5,0.9,0.91,True\n"
                     "smoothed sigma 0.25,e,0.5,s,10,0.05,0.0,0.1,0.4,False\n"
                     "smoothed sigma 0.25,e,1.0,s,10,0.6,0.3,0.8,0.0,False\n")
    redraw.recheck_certificates(tmp_path)
    lines = table.read_text().splitlines(keepends=True)
    assert lines[:2] == [header, kept]
    assert [line.rsplit(",", 2)[1:] for line in lines[2:]] == [["", "\n"], ["0.5", "True\n"], ["", "\n"]]
