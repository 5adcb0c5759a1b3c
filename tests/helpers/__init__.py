"""Test helpers: real-data paths, tiny models, a fake LLM and a fake OpenAI-compatible server."""
