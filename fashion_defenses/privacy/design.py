"""Which model of a recipe trains on which image, for membership inference run the way
the LiRA and RMIA papers run it (no TensorFlow here):

- Complementary pairs of models per recipe, every model the target's size: model 0 is
  the defense's own (the protocol's training split) and model 1 its complement; each
  further pair trains on a random half of the controlled images and on the other half.
- The controlled images: the first m training images (members of model 0) and the
  first m test images (non-members of model 0), m = min(training, test images). Every
  model trains on the rest of the training split, which all models share, plus its
  half of the controlled images (model 1: the test images; the random halves are
  drawn independently of model 0's and are the same for every recipe, so two recipes'
  targets have the same members). Validation images are in no model's training data;
  they only monitor training, as for model 0.
- Each model serves in turn as the target; its references are the models of the other
  pairs (as privacy_meter leaves the target's own pair out). So every controlled image
  has exactly as many IN as OUT references, and which ones trained on it says nothing
  of whether the target did (LiRA's and RMIA's code give every example IN and OUT
  models; independent random halves left a quarter of the examples without an IN, and
  a quarter without an OUT reference).
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
        """The models of every other pair: the target's own complement is no reference."""
        return [r for r in range(self.models) if r // 2 != target // 2]

    def training_positions(self, r):
        return np.flatnonzero(self.inside[r])

    def describe(self, n_train):
        return (f"{self.models} models of the recipe in complementary pairs, each on {n_train:,} images (the "
                f"target's size), each in turn the target, the other pairs its references; {self.m:,} + {self.m:,} "
                f"controlled images: the defense's own model trains on the first half, its complement on the second, "
                f"every other pair on a random half and the rest")


def membership_design(n_train, n_test, n, models, seed):
    """The design for a split of n_train training and n_test test images, n members and
    n non-members per audited set, `models` models per recipe: 1 (the defense's own,
    threshold attacks only) or complementary pairs, 2 or more of them (halves seeded
    by `seed`)."""
    m = min(n_train, n_test)
    if models != 1 and (models < 4 or models % 2):
        raise ValueError("one model per recipe (the defense's own), or an even number of at least 4: complementary "
                         "pairs, each target's references the other pairs")
    if 2 * n >= m:
        raise ValueError(f"{n} members per set need more than {2 * n} controlled images of each side (the rest are "
                         f"population samples); this split has {m}")
    inside = np.zeros((models, 2 * m), bool)
    inside[0, :m] = True
    for pair in range(models // 2):
        if pair:
            inside[2 * pair, np.random.default_rng([seed, pair]).permutation(2 * m)[:m]] = True
        inside[2 * pair + 1] = ~inside[2 * pair]
    return MembershipDesign(m, n, inside)
