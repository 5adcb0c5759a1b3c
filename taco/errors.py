"""The errors a user is meant to see: one line each, with the exit code the CLI returns.

- ``UserError`` (exit 2): something the user can fix — bad params, data or schema, a missing
  model or GGUF file, a misconfigured endpoint, a missing earlier stage's output.
- ``StageFailed`` (exit 1): the stage ran and said no — validation failed, too many teacher
  answers missing, too many non-finite training steps.

Any other exception is a bug: the CLI lets it show its traceback.
"""

from __future__ import annotations


class TacoError(Exception):
    """Base of taco's user-facing errors; ``exit_code`` is what ``taco`` exits with."""

    exit_code: int = 1


class UserError(TacoError):
    """Bad input the user can fix (params, data, schema, model files, endpoint); exit 2."""

    exit_code = 2


class StageFailed(TacoError):
    """A stage ran and refused its result (validation, failed LLM answers, bad steps); exit 1."""

    exit_code = 1


class ArgumentError(UserError, ValueError):
    """A library call got an argument out of range (a ``ValueError`` for library callers)."""


class ArgumentTypeError(UserError, TypeError):
    """A library call got an argument of the wrong type (a ``TypeError`` for library callers)."""
