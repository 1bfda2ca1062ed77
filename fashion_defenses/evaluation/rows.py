"""Lookups in a defense's evaluation rows (the dicts of core.evaluate, the long table's
rows): a row by attack, budget and image set, the fixed attacked set's tag, the suite's
FGSM-k and the AutoAttack row. Shared by the checks, the result and the tables, so
the evaluation jobs need none of the tables' code."""
from fashion_defenses.attacks import suite
from fashion_defenses.attacks.suite import HEADLINE_EPS


def fixed_images(rows):
    """The 'images' tag of the fixed attack set in a defense's rows."""
    return next(r["images"] for r in rows if r["attack"] == "benign" and r["images"].endswith("fixed"))


def fgsm_k_label(rows):
    """The suite's FGSM-k these rows ran (the study's loss in the paper protocol)."""
    return next(r["attack"] for r in rows if r["attack"].startswith("FGSM-k") and "transfer" not in r["attack"])


def find(rows, attack, eps=None, images=None):
    """The row of an attack (at eps, on those images); None if absent."""
    for r in rows:
        if r["attack"] == attack and (eps is None or abs(r["eps"] - eps) < 1e-4) and \
                (images is None or r["images"] == images):
            return r
    return None


def autoattack_row(rows, images=None, eps=HEADLINE_EPS):
    """A defense's AutoAttack row at eps: the standard version's, or the rand version's
    for a randomized defense (whatever judge its label names)."""
    rand = [r["attack"] for r in rows if r["attack"].startswith(suite.AUTOATTACK_RAND_LABEL)]
    return find(rows, "AutoAttack", eps, images) or next(
        (row for row in (find(rows, label, eps, images) for label in rand) if row), None)
