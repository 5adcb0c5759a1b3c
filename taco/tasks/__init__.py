"""What the LLM is asked and how its answers score: the task registry, metrics and the
``teacher`` stage (target-LLM outputs on the uncompressed prompts)."""
