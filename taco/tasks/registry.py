"""Task registry: the prompt template, the reward metric and output post-processing per task.

A template has a ``{context}`` field (the only part a compressor touches) and, for tasks with a
question, a ``{question}`` field placed *after* the context, so the question is never
compressed and stays next to the answer cue. Built-in templates are the paper's
(docs/algorithm.md §1); ``tasks.templates`` in params.yaml overrides the wording (the default
params.yaml asks the code task for "one sentence", which the embedded SmolLM2 needs to
summarise instead of echoing).

A user task adds itself in one place::

    register_task("sentiment", "Classify the sentiment (which may be compressed).\\n{context}\\n"
                  "Label:", metric="em")
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taco.config import ConfigError, Params, TaskParams
from taco.tasks.metrics import get_metric


def identity(text: str) -> str:
    """Leave the LLM output as it is."""
    return text


def first_line(text: str) -> str:
    """The first non-empty line (the paper scores code summaries on the first line only)."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a task needs: how to prompt, how to score an output against a target."""

    name: str
    template: str
    metric: str
    postprocess: Callable[[str], str] = identity

    def __post_init__(self) -> None:
        fields = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        if "context" not in fields:
            raise ConfigError(f"task {self.name!r}: the template needs a {{context}} field")
        unknown = fields - {"context", "question"}
        if unknown:
            raise ConfigError(
                f"task {self.name!r}: unknown template field(s) {', '.join(sorted(unknown))}; "
                "allowed: context, question"
            )
        get_metric(self.metric)  # fail early on an unknown metric name

    @property
    def has_question(self) -> bool:
        return "{question}" in self.template

    def prompt(self, context: str, question: str = "") -> str:
        """The user message for one (possibly compressed) context and its uncompressed question."""
        return self.template.format(context=context, question=question)

    def score(self, prediction: str, targets: Sequence[str]) -> float:
        """The task metric of a post-processed output against targets, on [0, 1]."""
        return get_metric(self.metric)(self.postprocess(prediction), list(targets))


_QA = (
    "Answer the following question based on the provided context (which may be compressed)."
    "\n{context}\nQuestion: {question}\nAnswer:"
)
_SUMMARIZATION = (
    "Summarize the provided meeting transcript (which may be compressed).\n{context}\nSummary:"
)
_CODE = "Summarize the following code (which may be compressed).\n{context}\nSummary:"

_BUILTIN = (
    TaskSpec("qa", _QA, "f1"),
    TaskSpec("summarization", _SUMMARIZATION, "bleu"),
    TaskSpec("code", _CODE, "bleu", first_line),
)


class TaskRegistry:
    """Name → TaskSpec; an instance (not global state), pre-filled with the built-in tasks."""

    def __init__(self, specs: Sequence[TaskSpec] = _BUILTIN) -> None:
        self._specs: dict[str, TaskSpec] = {s.name: s for s in specs}

    def register(
        self,
        name: str,
        template: str,
        metric: str,
        postprocess: Callable[[str], str] = identity,
        *,
        replace: bool = False,
    ) -> TaskSpec:
        if name in self._specs and not replace:
            raise ValueError(f"task {name!r} is already registered (pass replace=True)")
        spec = TaskSpec(name, template, metric, postprocess)
        self._specs[name] = spec
        return spec

    def get(self, name: str, templates: Mapping[str, str] | None = None) -> TaskSpec:
        """The spec of ``name`` with its template overridden by ``templates`` (params) if given."""
        try:
            spec = self._specs[name]
        except KeyError:
            raise ConfigError(
                f"unknown task {name!r}; registered: {', '.join(sorted(self._specs))}"
            ) from None
        if templates and name in templates:
            spec = dataclasses.replace(spec, template=templates[name])
        return spec

    def names(self) -> list[str]:
        return sorted(self._specs)


#: the registry the pipeline uses; user code registers its tasks here before running stages
TASKS = TaskRegistry()


def register_task(
    name: str, template: str, metric: str, postprocess: Callable[[str], str] = identity, **kw: Any
) -> TaskSpec:
    """Add a user task (template + metric) to the pipeline's registry."""
    return TASKS.register(name, template, metric, postprocess, **kw)


def get_task(name: str, params: Params | TaskParams | None = None) -> TaskSpec:
    """The task spec, with the templates of ``params.tasks`` (or of a ``TaskParams``) applied."""
    tasks = getattr(params, "tasks", params)
    templates = getattr(tasks, "templates", None)
    return TASKS.get(name, templates)
