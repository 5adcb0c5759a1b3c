"""Task registry: paper templates, the question kept out of the compressed part, user tasks."""

from __future__ import annotations

import pytest

from taco.config import ConfigError, Params, TaskParams, from_mapping, load_params
from taco.tasks.registry import TASKS, TaskRegistry, TaskSpec, first_line, get_task, register_task
from tests.helpers.paths import ROOT

PARAMS = ROOT / "params.yaml"


def test_builtin_templates_follow_the_paper() -> None:
    registry = TaskRegistry()
    assert registry.names() == ["code", "qa", "summarization"]
    summ = registry.get("summarization").prompt("A: hi\nB: bye")
    assert summ == (
        "Summarize the provided meeting transcript (which may be compressed).\nA: hi\nB: bye\n"
        "Summary:"
    )
    code = registry.get("code").prompt("def f(): pass")
    assert (
        code == "Summarize the following code (which may be compressed).\ndef f(): pass\nSummary:"
    )


def test_qa_question_comes_after_the_compressed_context() -> None:
    qa = TaskRegistry().get("qa")
    assert qa.has_question and qa.metric == "f1"
    prompt = qa.prompt("CONTEXT WORDS", "Who? {not a field}")
    assert prompt.index("CONTEXT WORDS") < prompt.index("Question: Who? {not a field}")
    assert prompt.endswith("\nAnswer:")


def test_params_override_the_template_wording() -> None:
    params = load_params(PARAMS)
    code = get_task("code", params)
    assert "in one sentence" in code.prompt("x")
    assert get_task("code", TaskParams(templates={})).template == TASKS.get("code").template
    assert get_task("qa", params).template == TASKS.get("qa").template


def test_code_scores_the_first_line_only() -> None:
    code = TaskRegistry().get("code")
    assert first_line("\n\n  Adds two numbers.  \nMore text\n") == "Adds two numbers."
    assert code.score("Adds two numbers.\ndef f(): ...", ["Adds two numbers."]) == pytest.approx(1)
    assert code.score("", ["Adds two numbers."]) == 0.0


def test_user_task_adds_template_and_metric_in_one_place() -> None:
    registry = TaskRegistry()
    spec = registry.register("sentiment", "Classify (may be compressed).\n{context}\nLabel:", "em")
    assert registry.get("sentiment") is spec
    assert spec.score("Positive.", ["positive"]) == 1.0
    with pytest.raises(ValueError, match="already registered"):
        registry.register("sentiment", "{context}", "em")
    assert "sentiment" not in TASKS.names()  # separate registries do not leak


def test_module_registry_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("taco.tasks.registry.TASKS", TaskRegistry())
    register_task("echo", "Repeat: {context}", "bleu")
    assert get_task("echo").prompt("x") == "Repeat: x"


@pytest.mark.parametrize(
    ("template", "metric", "message"),
    [
        ("no field", "bleu", "needs a {context} field"),
        ("{context} {answer}", "bleu", "unknown template field"),
        ("{context}", "meteor", "unknown metric"),
    ],
)
def test_bad_specs_are_rejected(template: str, metric: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        TaskSpec("t", template, metric)


def test_unknown_task_and_bad_param_template() -> None:
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(ConfigError, match="needs a"):
        from_mapping(TaskParams, {"templates": {"code": "Summarize:"}}, "tasks")
    assert isinstance(load_params(PARAMS), Params)
