"""Inference only (what serving imports): the compressor, text alignment and rebuilding,
budgeted selection and the encoder. Imports nothing from llm, rl, data or eval."""
