"""Pure statistics for A/B tests: sufficient statistics in, typed results out.

No I/O, no database, no pandas. SQL returns one row of sufficient statistics per arm
(and slice); build the statistics below from it, pool slices with ``+`` and call a test.
Degenerate data (empty arm, one unit, zero variance, control mean 0) never raises: the
result carries an ``error_message`` from :mod:`abplatform.core.stats.messages`.

Reference values and conventions: ``/work/shared/reference/stats_cases.md`` (gbstats).
"""

from abplatform.core.stats import messages
from abplatform.core.stats.bayesian import DEFAULT_PROPER_PRIOR_SD, GaussianPrior, bayesian_test
from abplatform.core.stats.cuped import RegressionAdjustedStatistic
from abplatform.core.stats.frequentist import welch_ttest
from abplatform.core.stats.moments import effect_moments
from abplatform.core.stats.multiple import (
    CorrectionMethod,
    adjust_p_values,
    benjamini_hochberg,
    correct_family,
    holm_bonferroni,
)
from abplatform.core.stats.power import (
    Baseline,
    achieved_power,
    minimum_detectable_effect,
    sample_size_per_variant,
)
from abplatform.core.stats.quantile import LatencyBins, LatencyHistogram, QuantileStatistic
from abplatform.core.stats.results import (
    DEFAULT_COMPARATOR,
    Alternative,
    BayesianResult,
    DifferenceType,
    EffectMoments,
    FrequentistResult,
    SrmResult,
)
from abplatform.core.stats.sequential import DEFAULT_TUNING, sequential_test
from abplatform.core.stats.srm import combine_srm, srm_test
from abplatform.core.stats.statistics import (
    ProportionStatistic,
    RatioStatistic,
    SampleMeanStatistic,
    Statistic,
    pool,
)
from abplatform.core.stats.stratified import StratifiedStatistic, stratify

__all__ = [
    "DEFAULT_COMPARATOR",
    "DEFAULT_PROPER_PRIOR_SD",
    "DEFAULT_TUNING",
    "Alternative",
    "Baseline",
    "BayesianResult",
    "CorrectionMethod",
    "DifferenceType",
    "EffectMoments",
    "FrequentistResult",
    "GaussianPrior",
    "LatencyBins",
    "LatencyHistogram",
    "ProportionStatistic",
    "QuantileStatistic",
    "RatioStatistic",
    "RegressionAdjustedStatistic",
    "SampleMeanStatistic",
    "SrmResult",
    "Statistic",
    "StratifiedStatistic",
    "achieved_power",
    "adjust_p_values",
    "bayesian_test",
    "benjamini_hochberg",
    "combine_srm",
    "correct_family",
    "effect_moments",
    "holm_bonferroni",
    "messages",
    "minimum_detectable_effect",
    "pool",
    "sample_size_per_variant",
    "sequential_test",
    "srm_test",
    "stratify",
    "welch_ttest",
]
