"""Every params key carries its help on its dataclass field; `taco params --explain` and
`taco <stage> --help` show it."""

from __future__ import annotations

import dataclasses

import pytest

from taco.cli import STAGES, build_parser
from taco.config import Params, explain, field_help, sections


def all_keys(obj: object = None, prefix: str = "") -> list[tuple[str, type, str]]:
    """(dotted key, its dataclass, field name) of every key, nested sections included."""
    obj = Params() if obj is None else obj
    out = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        out.append((f"{prefix}{f.name}", type(obj), f.name))
        if dataclasses.is_dataclass(value):
            out += all_keys(value, f"{prefix}{f.name}.")
    return out


def test_every_key_has_help() -> None:
    keys = [k for k in all_keys() if k[1] is not Params]
    assert len(keys) > 90  # every section's keys were walked
    missing = [dotted for dotted, cls, name in keys if not field_help(cls, name).strip()]
    assert not missing, f"params keys without help on their field: {missing}"


def test_explain_shows_every_key_with_its_help_on_one_line() -> None:
    lines = explain().splitlines()
    keys = [k for k in all_keys() if k[1] is not Params]
    assert len(lines) == len(keys) + len(sections())  # one line per key and per heading
    for dotted, cls, name in keys:
        text = field_help(cls, name)
        assert any(ln.lstrip().startswith(f"{name}:") and text in ln for ln in lines), dotted


def test_explain_one_section() -> None:
    text = explain(only=["reward"])
    assert text.splitlines()[0].startswith("reward:  # ")
    assert "tolerance_tokens: 30.0  # tau" in text and "train:" not in text


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_help_lists_its_section(stage) -> None:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices[stage.name].format_help()  # type: ignore[attr-defined]
    cls = sections()[stage.name]
    for f in dataclasses.fields(cls):
        help_text = field_help(cls, f.name)
        assert any(
            ln.strip().startswith(f"{f.name}:") and help_text in ln for ln in text.splitlines()
        ), f"`taco {stage.name} --help` does not show {stage.name}.{f.name} with its help"
