"""The sanity checks of an evaluation (Carlini et al. 2019, "On Evaluating
Adversarial Robustness"), each with what its failure means."""
from fashion_defenses.attacks import suite
from fashion_defenses.data import STUDY_EPS
from fashion_defenses.evaluation.rows import autoattack_row, find, fixed_images

UNBOUNDED_MAX_ACC = 0.05    # an eps = 1 attack that leaves more than this correct is not working


def beyond_noise(weaker, stronger):
    """The stronger attack leaves fewer images than the weaker by more than half the
    weaker's 95% interval: a difference the interval does not explain."""
    return weaker["acc"] - stronger["acc"] > (weaker["ci_high"] - weaker["ci_low"]) / 2


CHECK_MEANINGS = {  # what a failed check says about the evaluation (Carlini et al. 2019)
    "accuracy falls with eps": "a larger budget left more images: the attack is not finding what exists",
    "unbounded attack reaches ~0%": "an attack allowed to change the whole image still fails: gradients are "
                                    "masked or the attack is broken",
    "PGD no weaker than FGSM": "many steps did worse than one: the gradient misleads (masking)",
    "PGD-20 converged (AutoAttack no stronger beyond noise)": "PGD-20 alone overstates robustness; the worst case, "
                                                             "which includes AutoAttack, does not",
    "black-box no stronger than white-box": "Square found what the gradient attacks missed: gradients are masked",
    "adaptive no weaker than transfer": "the attack through the defense is weaker than one crafted without it: "
                                        "its gradient is unusable (BPDA/EOT needed)",
    "adaptive views complete": "a filter without its BPDA view or a randomized layer without EOT: the adaptive "
                               "attacks are incomplete",
}


def checks_markdown(check_rows):
    """The checks as a reader wants them: one line per defense that fails one, with what
    the failure means, or one sentence that every check passes."""
    failures = [(r["defense"], [(c, v[len("FAIL ("):-1]) for c, v in r.items() if c in CHECK_MEANINGS
                                and v.startswith("FAIL")]) for r in check_rows]
    failures = [(label, failed) for label, failed in failures if failed]
    n_defenses = len(check_rows)
    if not failures:
        return (f"Every check passes for all {n_defenses} defenses ({len(CHECK_MEANINGS)} checks each; "
                "the details are in the CSV).")
    lines = [f"{len(failures)} of {n_defenses} defenses fail a check; every other check passes (details in the "
             "CSV).", ""]
    for label, failed in failures:
        lines.append(f"- **{label}**: " + "; ".join(f"{check} fails ({detail})" for check, detail in failed))
    lines += ["", "What a failure means:", ""]
    lines += [f"- *{check}*: {CHECK_MEANINGS[check]}."
              for check in dict.fromkeys(c for _, failed in failures for c, _ in failed)]
    return "\n".join(lines)


def sanity_checks(rows, settings, missing_views=(), fgsm_k="FGSM-k", eps=suite.HEADLINE_EPS):
    """Carlini et al.'s checks of an evaluation, from one defense's rows, and whether
    its adaptive views are complete, at the headline budget eps: a list of (check,
    passed, detail). Each can fail (tests/test_evaluation.py builds a model that
    fails each one)."""
    fixed = fixed_images(rows)
    pick = lambda attack, budget: find(rows, attack, budget, fixed)  # noqa: E731
    pct1 = lambda r: f"{100 * r['acc']:.1f}%"  # noqa: E731
    checks = []
    curve = [pick("PGD-20", budget) for budget in settings.eps_grid]
    rises = [f"{a['eps']:g}->{b['eps']:g}" for a, b in zip(curve, curve[1:]) if b["acc"] > a["ci_high"]]
    checks.append(("accuracy falls with eps", not rises, "rises at " + ", ".join(rises) if rises else "monotone"))
    unbounded = pick("unbounded PGD-20", 1.0)
    checks.append(("unbounded attack reaches ~0%", unbounded["acc"] <= UNBOUNDED_MAX_ACC,
                   f"{pct1(unbounded)} at eps 1, from the clean image"))
    pgd, fgsm = pick("PGD-20", eps), pick("FGSM", eps)
    checks.append(("PGD no weaker than FGSM", pgd["acc"] <= fgsm["ci_high"],
                   f"PGD-20 {pct1(pgd)} vs FGSM {pct1(fgsm)}"))
    strongest = autoattack_row(rows, fixed, eps)
    checks.append(("PGD-20 converged (AutoAttack no stronger beyond noise)", not beyond_noise(pgd, strongest),
                   f"PGD-20 {pct1(pgd)} vs {strongest['attack']} {pct1(strongest)}"))
    white_box = find(rows, " + ".join(suite.AUTOATTACK[:-1]), eps, fixed)
    if white_box is None:  # a randomized defense: AutoAttack's rand version has no Square
        checks.append(("black-box no stronger than white-box", True, "not run (randomized defense)"))
    else:  # Square ran after the white-box attacks, on what they left
        checks.append(("black-box no stronger than white-box", not beyond_noise(white_box, strongest),
                       f"{white_box['attack']} {pct1(white_box)}, then Square {pct1(strongest)}"))
    weaker = [f"{kind}: adaptive {pct1(a)} > transfer {pct1(t)}"
              for kind, a, t in ((fgsm_k, pick(fgsm_k, STUDY_EPS), pick(f"{fgsm_k} transfer", STUDY_EPS)),
                                 ("PGD-20", pgd, pick("PGD-20 transfer", eps)))
              if t is not None and a["acc"] > t["ci_high"]]
    checks.append(("adaptive no weaker than transfer", not weaker, "; ".join(weaker) or "ok"))
    checks.append(("adaptive views complete", not missing_views, "; ".join(missing_views) or "ok"))
    return checks
