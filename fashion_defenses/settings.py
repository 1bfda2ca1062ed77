"""The study's settings that scripts state in their --help, kept free of TensorFlow so
that --help answers at once."""

# the L-inf budgets of FGSM and PGD-20 on the undefended CNN (attacks.py), and its L2 radii
DEFAULT_EPS = {"standard": (0.02, 0.05, 0.1, 0.15, 0.2, 0.3), "paper": (0.05, 0.1, 0.2)}
QUICK_EPS = (0.05, 0.1, 0.2)
L2_RADII = {"standard": (0.5, 1.0, 1.5, 2.0), "paper": (0.5, 1.0), "quick": (0.5, 1.0)}

# the named filters of defenses/filters.py that the standard filter study evaluates
STANDARD_FILTERS = ("dual", "median2", "median3", "gaussian", "bits3", "jpeg90", "rotate10")
