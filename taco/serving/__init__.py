"""Serving: packaging (stage `package`), the model registry (BentoML store) and the
BentoML service (service.py imports taco.compress and taco.config only)."""
