"""What the membership-inference attacks read off a model's logits (numpy alone): the
log-softmax and the RMIA paper's soft-margin Taylor softmax. Apart from the attacks
(privacy/attacks.py) because each model's outputs are saved once through them: a
change to an attack must not throw away the trainings behind those outputs."""
import dataclasses

import numpy as np


def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class SoftMarginTaylor:
    """A softmax at a temperature in which exp is its Taylor series and the true class's
    logit is lowered by a margin; the RMIA paper's code uses T 2, margin 0.6, 4 terms."""
    temperature: float = 2.0
    margin: float = 0.6
    terms: int = 4


SOFT_MARGIN_TAYLOR = SoftMarginTaylor()


def _taylor_exp(x, terms):
    """exp(x) by the first `terms` terms of its series: 1 + x + x^2/2 + ..."""
    total, power = np.ones_like(x), np.ones_like(x)
    for i in range(1, terms):
        power = power * x / i
        total = total + power
    return total


def taylor_soft_margin(logits, y, config=SOFT_MARGIN_TAYLOR):
    """The RMIA paper's signal of the true class y. With 4 terms exp's series is a cubic,
    negative for logits below about -1.6 T; kept as the paper's code has it."""
    z = np.asarray(logits, np.float64) / config.temperature
    rows = np.arange(len(y))
    true = _taylor_exp(z[..., rows, y] - config.margin, config.terms)
    others = _taylor_exp(z, config.terms).sum(axis=-1) - _taylor_exp(z[..., rows, y], config.terms)
    return true / (others + true)
