"""Independent high-precision oracles for gradverify's catalog, and the golden tables they make.

Everything here is written straight from the formulas with mpmath, at 50 significant digits,
and never imports gradverify: the oracle shares no code with what it checks. Gradients come
from mpmath's own numerical differentiation of the oracle's forward (``ctx.diff``), not from a
hand-derived formula, so a wrong derivation in the catalog cannot be mirrored here.

``python -m reference.golden --check`` recomputes every table and diffs it against
``reference/golden/*.json``; ``--write`` regenerates them.
"""
