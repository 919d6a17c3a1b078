import numpy as np
import torch
from scipy.stats import ttest_1samp

from igraphflow._evidence import beats


def test_beats_is_a_one_sample_t_statistic_above_two():
    rng = np.random.default_rng(0)
    for shift in np.linspace(-0.5, 1.0, 31):
        scores, baseline = rng.normal(shift, 1.0, 40), rng.normal(0.0, 0.1, 40)
        assert beats(scores, baseline) == (ttest_1samp(scores - baseline, 0.0).statistic > 2)
        # Tensors, as the heads pass their losses, give the same answer as arrays.
        assert beats(torch.tensor(scores), torch.tensor(baseline)) == beats(scores, baseline)


def test_one_item_never_beats():
    assert not beats(np.array([5.0]), np.array([0.0]))
