"""Serving: packaging (stage `package`), the model registry (BentoML store) and the
BentoML service (service.py imports taco.compress, taco.config and taco.layout only)."""
