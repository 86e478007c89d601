"""revflow: online RL with flow and diffusion policies via Reverse Flow Matching.

The mathematics is specified in one place, ``docs/reference/method.md`` (cited below as
"method note §N"); module docstrings cite its sections instead of re-deriving them. The
baselines' published defaults are in ``docs/reference/baselines.md`` ("baselines note").
"""

__version__ = "0.1.0"
