"""Evaluation: baselines at equal budget, the ``evaluate`` and ``gate`` stages, the run report."""
