"""GMM-40: the 40-mode 2-D Gaussian mixture of FAB and iDEM, and its W2 measurement.

The target exactly as the public code defines it: FAB's ``fab.target_distributions.gmm.GMM``
(lollcat/fab-torch) with iDEM's arguments (jarridrb/DEM, ``configs/energy/gmm.yaml``:
``dimensionality=2, n_mixes=40, loc_scaling=40, log_var_scaling=1.0``; ``GMM.__init__``
calls ``torch.manual_seed(0)`` first):

- means = (torch.rand((40, 2)) - 0.5) * 2 * 40, i.e. uniform in [-40, 40]^2, the first 80
  draws of torch's CPU generator after ``manual_seed(0)``;
- every component N(mean, diag(s^2)) with s = softplus(1.0) = log(1 + e) ~ 1.3133 (their
  ``scale_trils = diag_embed(softplus(log_var))``), equal weights.

The means are committed as data (``data/gmm40_means.csv``); :func:`fab_gmm40_means`
regenerates them without torch: torch's CPU ``rand`` for float32 is an MT19937 stream
seeded by ``init_genrand(seed)`` (numpy's legacy seeding of the same generator), each draw
the low 24 bits of one 32-bit output times 2^-24 (the test checks the CSV against it and the
first draws against torch's well-known ``manual_seed(0)`` values). FAB's ``log_prob`` also
sets values below -1e4 to -inf, which changes no sample; ``log_prob`` here is the exact
mixture density. iDEM trains in coordinates divided by ``data_normalization_factor = 50``
(``Target.data_scale``).

W2 as in Aggarwal et al., "Models trained with unnormalized density functions: a need for a
course correction" (ICLR 2025 blog post): the 2-Wasserstein distance between 1000 model
samples and 1000 exact samples, exact OT with POT (``ot.emd2``, uniform weights, squared
Euclidean cost, square root), mean ± std over 25 batches (:func:`w2_batches`).
"""

from __future__ import annotations

import math
from importlib import resources

import jax
import numpy as np

Array = jax.Array

NUM_MODES, LOC_SCALING, LOG_VAR_SCALING, SEED = 40, 40.0, 1.0, 0
COMPONENT_STD: float = math.log1p(math.exp(LOG_VAR_SCALING))  # softplus(1.0)
DEM_NORMALIZATION: float = 50.0

# Aggarwal et al. (ICLR 2025 blog post), GMM-40, W2 over 25 batches of 1000 samples.
PUBLISHED_W2: dict[str, tuple[float, float]] = {
    "exact samples vs ground truth": (4.159, 0.604),
    "iDEM": (7.698, 1.442),
    "iEFM": (7.364, 0.955),
    "MCMC": (4.219, 0.569),
}
PUBLISHED_SOURCE = (
    'Aggarwal et al., "Models trained with unnormalized density functions: a need for a '
    'course correction", ICLR 2025 blog post'
)


def torch_cpu_rand(seed: int, n: int) -> np.ndarray:
    """The first ``n`` float32 values of ``torch.manual_seed(seed); torch.rand(n)`` on CPU."""
    bits = np.random.MT19937(0)
    bits._legacy_seeding(seed)  # init_genrand(seed), as torch's CPU generator
    raw = bits.random_raw(n).astype(np.uint64)
    return ((raw & ((1 << 24) - 1)).astype(np.float64) * 2.0**-24).astype(np.float32)


def fab_gmm40_means() -> np.ndarray:
    """FAB's GMM means for iDEM's arguments, shape (40, 2), float32."""
    u = torch_cpu_rand(SEED, NUM_MODES * 2).reshape(NUM_MODES, 2)
    return ((u - np.float32(0.5)) * np.float32(2.0) * np.float32(LOC_SCALING)).astype(np.float32)


def gmm40_means() -> np.ndarray:
    """The committed means (``data/gmm40_means.csv``), shape (40, 2)."""
    text = resources.files("revflow.toy").joinpath("data/gmm40_means.csv").read_text()
    return np.loadtxt(text.splitlines(), delimiter=",", skiprows=1, dtype=np.float32)


def w2(x: np.ndarray, y: np.ndarray) -> float:
    """Exact 2-Wasserstein distance between two empirical measures (uniform weights)."""
    import ot

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    cost = ot.dist(x, y, metric="sqeuclidean")
    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    return float(math.sqrt(max(ot.emd2(a, b, cost, numItermax=1_000_000), 0.0)))


def w2_batches(
    sample_model, sample_exact, key: Array, n: int = 1000, batches: int = 25
) -> np.ndarray:
    """W2 of ``batches`` independent pairs (n model samples, n exact samples); the callables
    map (key, n) to (n, 2) arrays."""
    out = []
    for k in jax.random.split(key, batches):
        k_model, k_exact = jax.random.split(k)
        out.append(w2(np.asarray(sample_model(k_model, n)), np.asarray(sample_exact(k_exact, n))))
    return np.asarray(out)
