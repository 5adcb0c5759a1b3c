"""Model-free stages: the Example schema, data files, the stdlib miner, and the ``ingest``,
``prepare`` and ``validate`` stages."""
