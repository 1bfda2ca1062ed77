"""Which model of a recipe trains on which image, for membership inference run the way
the LiRA and RMIA papers run it (no TensorFlow here):

- K models per recipe, every one the target's size: model 0 is the defense's own model
  (the protocol's training split); models 1..K-1 are trained by the same recipe.
- The controlled images: the first m training images (members of model 0) and the
  first m test images (non-members of model 0), m = min(training, test images). Every
  other model trains on the rest of the training split, which all models share, plus
  a random half of the controlled images drawn independently for each model (the same
  halves for every recipe, so two recipes' targets have the same members). Validation
  images are in no model's training data; they only monitor training, as for model 0.
- Each model serves in turn as the target, the others as its references (leave one
  out). Because the halves are independent, which references trained on an example
  says nothing about whether the target did.
- Audited examples: an evaluation set (the study's: the first n training and first n
  test images) and a disjoint calibration set (the next n of each), on which decision
  thresholds are fitted. The other controlled images are the population samples z
  RMIA compares against: for each target, those it did not train on.
"""
import dataclasses

import numpy as np


@dataclasses.dataclass
class MembershipDesign:
    """Positions refer to the controlled images: 0..m-1 the first m training images,
    m..2m-1 the first m test images."""
    m: int
    n: int
    inside: np.ndarray          # (models, 2m): did model r train on controlled image i?

    @property
    def models(self):
        return len(self.inside)

    @property
    def eval_positions(self):
        return np.r_[0:self.n, self.m:self.m + self.n]

    @property
    def calib_positions(self):
        return np.r_[self.n:2 * self.n, self.m + self.n:self.m + 2 * self.n]

    @property
    def audited_positions(self):
        """Evaluation set, then calibration set."""
        return np.r_[self.eval_positions, self.calib_positions]

    @property
    def audited_is_eval(self):
        """Which of audited_positions belong to the evaluation set."""
        return np.r_[np.ones(2 * self.n, bool), np.zeros(2 * self.n, bool)]

    def population_positions(self, target):
        """The controlled images outside the audited sets that the target did not train on."""
        rest = np.r_[2 * self.n:self.m, self.m + 2 * self.n:2 * self.m]
        return rest[~self.inside[target, rest]]

    def references(self, target):
        return [r for r in range(self.models) if r != target]

    def training_positions(self, r):
        return np.flatnonzero(self.inside[r])

    def describe(self, n_train):
        return (f"{self.models} models of the recipe, each on {n_train:,} images (the target's size), each in turn "
                f"the target of the others; {self.m:,} + {self.m:,} controlled images, of which each model beyond the "
                f"defense's own trains on a random half")


def membership_design(n_train, n_test, n, models, seed):
    """The design for a split of n_train training and n_test test images, n members and
    n non-members per audited set, `models` models per recipe (seeded by `seed`)."""
    m = min(n_train, n_test)
    if models < 1:
        raise ValueError("at least one model per recipe (the defense's own)")
    if 2 * n >= m:
        raise ValueError(f"{n} members per set need more than {2 * n} controlled images of each side (the rest are "
                         f"population samples); this split has {m}")
    inside = np.zeros((models, 2 * m), bool)
    inside[0, :m] = True
    for r in range(1, models):
        inside[r, np.random.default_rng([seed, r]).permutation(2 * m)[:m]] = True
    return MembershipDesign(m, n, inside)
