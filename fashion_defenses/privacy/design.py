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
- Audited examples: the first n training and first n test images (n = m by default:
  every controlled image; the paper protocol keeps the study's 2,000). Attacks that
  fit a decision threshold are cross-fitted: the threshold fitted on one of two folds
  decides the other. RMIA's population samples z are validation images, which no model
  of any recipe trains on (experiments/membership_inference.py).
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
    def audited_positions(self):
        """The first n controlled images of each side: members of model 0, then its non-members."""
        return np.r_[0:self.n, self.m:self.m + self.n]

    @property
    def audited_fold(self):
        """Each audited example's fold (0 or 1), alternating, so that each fold holds
        half of every side; a threshold fitted on one fold decides the other."""
        return np.arange(2 * self.n) % 2

    def references(self, target):
        """The models of every other pair: the target's own complement is no reference."""
        return [r for r in range(self.models) if r // 2 != target // 2]

    def training_positions(self, r):
        return np.flatnonzero(self.inside[r])


def membership_design(n_train, n_test, n, models, seed):
    """The design for a split of n_train training and n_test test images, n members and
    n non-members of model 0 audited (None: every controlled image), `models` models per
    recipe: 1 (the defense's own, threshold attacks only) or complementary pairs, 2 or
    more of them (halves seeded by `seed`)."""
    m = min(n_train, n_test)
    n = m if n is None else n
    if models != 1 and (models < 4 or models % 2):
        raise ValueError("one model per recipe (the defense's own), or an even number of at least 4: complementary "
                         "pairs, each target's references the other pairs")
    if n > m or n < 2:
        raise ValueError(f"{n} members audited need {n} controlled images of each side, and at least 2 (one per "
                         f"fold); this split has {m}")
    inside = np.zeros((models, 2 * m), bool)
    inside[0, :m] = True
    for pair in range(models // 2):
        if pair:
            inside[2 * pair, np.random.default_rng([seed, pair]).permutation(2 * m)[:m]] = True
        inside[2 * pair + 1] = ~inside[2 * pair]
    return MembershipDesign(m, n, inside)
