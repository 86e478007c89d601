"""The sampler methods and the budget they share (method note §4 and §6, last item).

A method says which model is trained (flow or diffusion, its path and sampler) and how its
regression target is made from the unnormalised density: the posterior mean E[x1 | x_t]
estimated with K reverse samples under a control variate of
:data:`revflow.estimators.CONTROL_VARIATES` (method note §4), optionally with the estimated
score's norm clipped as iDEM does. Methods (:data:`METHODS`):

========================  ==========  ==============  ============================  ==========
name                      model       path            control variate (note §4)     sampler
========================  ==========  ==============  ============================  ==========
``rfm``                   flow        linear          ``"optimal"`` (per-dim c*)    20 Euler
``rfm-isotropic``         flow        linear          ``"optimal-isotropic"``       20 Euler
``rfm-none``              flow        linear          ``"none"`` (noise exp.)       20 Euler
``rfm-gradient``          flow        linear          ``"gradient"`` (Tweedie)      20 Euler
``rfm-gradient-clip``     flow        linear          ``"gradient"``, score clip 70 20 Euler
``rfm-<name>``            flow        linear          any other member ``<name>``   20 Euler
``qne``                   diffusion   VP cosine, eps  ``"none"`` (QNE / MaxEntDP)   100 DDPM
``idem``                  diffusion   VE geometric    ``"gradient"``, score clip 70 100 DDPM
``fm-exact``              flow        linear          none: exact x1 (oracle)       20 Euler
========================  ==========  ==============  ============================  ==========

``rfm-<name>`` rows are made for every member of ``CONTROL_VARIATES`` not named above, so a
new control variate is a method here (and in the toy and :func:`revflow.sampling.fit`) by
itself.

Every method but ``qne`` and ``idem`` (kept as published) draws its reverse samples under an
adaptive Gaussian reference of the target by default (``TrainConfig.reference``; needed in
10-D, docs/sampling_10d).

The baselines as their papers define them (baselines note):

- ``qne``: QNE / MaxEntDP (Dong et al. 2025): a VP-cosine diffusion model whose eps-target is
  the self-normalised-weighted average of the reverse candidates' noises, i.e. the
  noise-expectation estimator (c = 0); 100 DDPM steps as in the RFM paper's toy.
- ``idem``: iDEM (Akhound-Sadegh et al. ICML 2024; public code jarridrb/DEM,
  ``configs/experiment/gmm_idem.yaml``): variance-exploding path with the geometric noise
  schedule sigma from 1e-5 to 1.0 (``VE(1e-5, 1.0)``), score target = the weighted average of
  the reverse samples' target gradients (gradient-expectation, c = (beta/alpha)^2), and the
  estimated score clipped to norm at most ``max_score_norm = 70`` before the regression
  (their ``Clipper(should_clip_scores=True, max_score_norm=70)``). Like DEM, the model works
  in coordinates normalised into about [-1, 1] (their ``data_normalization_factor``; see
  ``TrainConfig.scale``), where sigma_max = 1 covers the data and the clip applies. The
  eps-regression |eps_hat - eps|^2 on VE equals iDEM's loss sigma_t^2 |s_hat - s|^2 (their
  lambda(t) = sigma_t^2 + 1e-3 up to the 1e-3). Left out: the replay buffer of generated
  samples (noisy points here come from the model's own samples, as in the RL agent) and
  their 500 MC samples (K is the budget every method shares).
- ``fm-exact`` is a reference, not a method: conditional flow matching on exact target
  samples (regression target x1 itself, whose minimiser is E[x1 | x_t], method note §3).
  It needs an exact sampler, which only benchmarks have.
"""

from __future__ import annotations

import dataclasses
import math

from revflow.estimators import CONTROL_VARIATES

IDEM_MAX_SCORE_NORM: float = 70.0  # DEM's configs/experiment/gmm_idem.yaml
IDEM_SIGMA_MIN, IDEM_SIGMA_MAX = 1e-5, 1.0  # DEM's geometric noise schedule


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """How one method builds its model and its training targets."""

    name: str
    kind: str  # "flow" | "diffusion"
    control_variate: str | float
    label: str
    path: str = "linear"  # "linear" | "vp-cosine" | "ve-geometric"
    max_score_norm: float | None = None  # clip the estimated score's norm (iDEM)
    oracle: bool = False  # trains on exact target samples instead of the density
    reference: str = "adaptive"  # what TrainConfig.reference = "auto" means for this method


def _methods() -> dict[str, MethodSpec]:
    named = {
        "optimal": ("rfm", "RFM (flow, optimal c*)"),
        "optimal-isotropic": ("rfm-isotropic", "RFM isotropic c*"),
        "none": ("rfm-none", "RFM c=0 (noise exp.)"),
        "gradient": ("rfm-gradient", "RFM gradient exp."),
    }
    out: dict[str, MethodSpec] = {}
    for cv in CONTROL_VARIATES:
        name, label = named.get(cv, (f"rfm-{cv}", f"RFM {cv}"))
        out[name] = MethodSpec(name, "flow", cv, label)
    out["rfm-gradient-clip"] = MethodSpec(
        "rfm-gradient-clip",
        "flow",
        "gradient",
        "RFM gradient exp., score clip",
        max_score_norm=IDEM_MAX_SCORE_NORM,
    )
    out["qne"] = MethodSpec(
        "qne", "diffusion", "none", "QNE (diffusion)", path="vp-cosine", reference="none"
    )
    out["idem"] = MethodSpec(
        "idem",
        "diffusion",
        "gradient",
        "iDEM (VE diffusion, score clip)",
        path="ve-geometric",
        max_score_norm=IDEM_MAX_SCORE_NORM,
        reference="none",
    )
    out["fm-exact"] = MethodSpec(
        "fm-exact", "flow", "none", "flow matching on exact samples (oracle)", oracle=True
    )
    return out


METHODS: dict[str, MethodSpec] = _methods()
PROPOSALS: tuple[str, ...] = ("model", "broad")
REFERENCES: tuple[str, ...] = ("auto", "none", "adaptive")
DIFFUSION_SAMPLERS: tuple[str, ...] = ("ddpm", "ddim")


def resolve_reference(cfg: TrainConfig, method: MethodSpec) -> str:
    """The reference a run of ``method`` uses: ``cfg.reference``, where "auto" means the
    method's own (``MethodSpec.reference``)."""
    return method.reference if cfg.reference == "auto" else cfg.reference


def get_method(name: str) -> MethodSpec:
    """Look a method up by name; unknown names raise ValueError listing the available ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Budget, optimiser and model sizes shared by every method (equal cost comparison).

    The defaults are the setup chosen for the oracle ``fm-exact`` to recover every mode of
    the toy targets (docs/toy_budget: the 16-mode grid over 250 ... 2000 updates); the
    earlier Adam 3e-4, width 128 x 2 blocks, EMA 0.99 found 2/16 grid modes at 3000.

    The optimiser is Adam with global-norm gradient clipping; its learning rate warms up
    linearly over ``warmup`` updates to ``lr`` and then decays along a cosine to
    ``lr * lr_final`` at ``steps`` (``lr_final = 1``: constant). Samples are drawn with an
    exponential moving average of the parameters (decay ``ema``; 0 = the online parameters).
    ``scale``: the model works in y = x / scale (the density of y is p(scale y), up to a
    constant) and its samples are multiplied back; 1 = the target's own coordinates.

    ``reference``: where the K reverse samples of a noisy point come from. ``"none"``: the
    reverse kernel N(x_t/alpha_t, (beta_t/alpha_t)^2 I) alone (method note §3).
    ``"adaptive"``: the kernel times a Gaussian N(m, (reference_widen sd)^2) fitted to the
    density by adaptive importance sampling (``reference_samples`` draws per update, moments
    averaged with ``reference_decay``, started at N(0, broad_std^2 I);
    :mod:`revflow.sampling.reference`), the weights corrected for it. Where x_t is mostly
    noise (small t) the kernel's draws spread as 1/t and in 10-D their weights degenerate
    (ESS 1): the estimate follows the component with the heaviest tail and rfm collapses onto
    it (docs/sampling_10d); the reference keeps the draws where the density is, and on the
    2-D toys it also lowers SW2 and MMD^2 at 1000 updates (docs/sampling_10d/toy_2d.md).
    ``"auto"`` (the default): ``"adaptive"`` for the rfm family, ``"none"`` for ``qne`` and
    ``idem``, which keep their published reverse samples (``MethodSpec.reference``).
    """

    steps: int = 2000
    batch: int = 256
    num_reverse_samples: int = 64  # K, the posterior-estimation budget per noisy point
    proposal: str = "model"
    broad_std: float = 3.0
    reference: str = "auto"
    reference_widen: float = 1.5
    reference_decay: float = 0.9
    reference_samples: int = 1024
    t_min: float = 0.01
    t_max: float = 0.99
    lr: float = 3e-3
    lr_final: float = 0.1
    warmup: int = 100
    grad_clip: float = 10.0
    ema: float = 0.995
    hidden: int = 256
    num_blocks: int = 3
    time_embed_dim: int = 64
    flow_steps: int = 20
    diffusion_steps: int = 100
    diffusion_sampler: str = "ddpm"
    diffusion_t_start: float = 0.01  # first time of the diffusion sampler (alpha_t > 0 there)
    diffusion_clip: float | None = None  # clip the sampler's x1-prediction to [-c, c]
    time_scale: float = 1000.0  # the net sees time_scale * t (sinusoidal embedding resolution)
    scale: float = 1.0
    chunk: int = 50  # updates per jitted call (lax.scan); the progress bar moves per chunk

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for an invalid configuration (called on construction)."""
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
            (
                self.num_reverse_samples >= 1,
                f"num_reverse_samples (K) must be >= 1, got {self.num_reverse_samples}",
            ),
            (
                self.proposal in PROPOSALS,
                f"unknown proposal {self.proposal!r}; available: {', '.join(PROPOSALS)}",
            ),
            (self.broad_std > 0, f"broad_std must be > 0, got {self.broad_std}"),
            (
                self.reference in REFERENCES,
                f"unknown reference {self.reference!r}; available: {', '.join(REFERENCES)}",
            ),
            (
                self.reference_widen > 0 and math.isfinite(self.reference_widen),
                f"reference_widen must be > 0, got {self.reference_widen}",
            ),
            (
                0.0 <= self.reference_decay < 1.0,
                f"reference_decay must lie in [0, 1), got {self.reference_decay}",
            ),
            (
                self.reference_samples >= 1,
                f"reference_samples must be >= 1, got {self.reference_samples}",
            ),
            (
                0.0 < self.t_min < self.t_max < 1.0,
                f"need 0 < t_min < t_max < 1, got t_min={self.t_min}, t_max={self.t_max}",
            ),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be > 0, got {self.lr}"),
            (0.0 < self.lr_final <= 1.0, f"lr_final must lie in (0, 1], got {self.lr_final}"),
            (0 <= self.warmup < self.steps, f"need 0 <= warmup < steps, got {self.warmup}"),
            (self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}"),
            (0.0 <= self.ema < 1.0, f"ema must lie in [0, 1), got {self.ema}"),
            (
                self.hidden >= 1 and self.num_blocks >= 0,
                f"need hidden >= 1 and num_blocks >= 0, got {self.hidden}, {self.num_blocks}",
            ),
            (self.time_embed_dim >= 2, f"time_embed_dim must be >= 2, got {self.time_embed_dim}"),
            (self.flow_steps >= 1, f"flow_steps must be >= 1, got {self.flow_steps}"),
            (
                self.diffusion_steps >= 1,
                f"diffusion_steps must be >= 1, got {self.diffusion_steps}",
            ),
            (
                self.diffusion_sampler in DIFFUSION_SAMPLERS,
                f"unknown diffusion_sampler {self.diffusion_sampler!r}; "
                f"available: {', '.join(DIFFUSION_SAMPLERS)}",
            ),
            (
                self.scale > 0 and math.isfinite(self.scale),
                f"scale must be > 0, got {self.scale}",
            ),
            (self.chunk >= 1, f"chunk must be >= 1, got {self.chunk}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
