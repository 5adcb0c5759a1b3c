"""The `taco` command line: one subcommand per pipeline stage plus `compress`.

Each subcommand is registered by a ``_add_<name>`` function below and runs a handler that
returns an exit code. Expected failures (bad arguments, bad input files, bad params) print
one line, ``taco: error: ...``, and exit 2; heavy libraries are imported inside handlers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from taco import __version__

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``taco: error: ...``, exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"taco: error: {message} (see `{self.prog} --help`)\n")


def _read_input(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise UsageError(f"input file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None


# ------------------------------------------------------------------------------ compress


def _add_compress(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "compress",
        help="compress a prompt with a trained (or the embedded) compressor",
        description=(
            "Compress FILE (or standard input) by keeping the words the compressor scores "
            "highest, until the token budget is met. Prints the compressed prompt, or with "
            "--json the full result in LLMLingua's format plus taco's numeric fields."
        ),
    )
    p.add_argument(
        "file", nargs="?", default="-", metavar="FILE|-", help="input text (default: stdin)"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="compressor folder or hub id (default: the embedded MiniLM encoder, untrained head)",
    )
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--rate", type=float, help="fraction of tokens to keep, in (0, 1]")
    budget.add_argument("--target-tokens", type=int, help="number of tokens to keep (>= 0)")
    p.add_argument(
        "--force-token",
        action="append",
        default=None,
        metavar="T",
        help='a word always kept; repeatable (default: "\\n", which keeps line breaks)',
    )
    p.add_argument("--keep-digits", action="store_true", help="always keep words with digits")
    p.add_argument(
        "--unit",
        choices=("word", "sentence", "line"),
        default=None,
        help="what the budget keeps whole (default: the model's taco_unit, else word)",
    )
    p.add_argument(
        "--question", default="", help="task question the encoder reads (never compressed)"
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        metavar="NAME",
        help="count the budget in the target LLM's tokens: a tokenizer folder or hub id, "
        "'embedded' (SmolLM2, the default target LLM, as `taco train` counts) or "
        "'tiktoken:ENCODING' (e.g. tiktoken:cl100k_base); default: the encoder's tokens",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "int8", "auto"),
        default="float32",
        help="encoder precision; int8: dynamic quantization (CPU); auto: the fastest of int8, "
        "bf16 (where native) and float32 whose decisions agree with float32's on >= 99%% of "
        "calibration words (checked at load; -v says which, --json's taco.metadata too)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return _run_compress


def _counter(spec: str | None) -> Any:
    """``--tokenizer``: the token counter the budget is counted in (None: the encoder's)."""
    if spec is None:
        return None
    from taco.compressor import HFTokenCounter, tiktoken_counter

    try:
        if spec.startswith("tiktoken:"):
            return tiktoken_counter(spec.split(":", 1)[1])
        from taco.llm_local import load_tokenizer

        return HFTokenCounter(load_tokenizer(None if spec == "embedded" else spec))
    except (OSError, ValueError, ImportError, KeyError) as exc:
        raise UsageError(f"--tokenizer {spec!r}: cannot load it ({exc})") from None


def _run_compress(args: argparse.Namespace) -> int:
    from taco.compressor import Compressor, check_budget_args

    check_budget_args(args.rate, args.target_tokens)  # before the (slow) model load
    text = _read_input(args.file)
    force = tuple(args.force_token) if args.force_token is not None else ("\n",)
    compressor = Compressor.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, token_counter=_counter(args.tokenizer)
    )
    result = compressor.compress(
        text,
        rate=args.rate,
        target_tokens=args.target_tokens,
        force_tokens=force,
        keep_digits=args.keep_digits,
        question=args.question,
        unit=args.unit,
    )
    if args.json:
        out = result.to_llmlingua_dict()
        out["taco"] = result.to_dict()
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result.compressed_prompt + "\n")
    return 0


# ---------------------------------------------------------------- ingest / prepare / validate


def _params_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", metavar="FILE", help="params file")


def _add_ingest(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "ingest",
        help="snapshot the configured source into data/raw/<task>/",
        description=(
            "Read the source named by params.yaml's ingest section (default: function/docstring "
            "pairs mined from this Python's standard library) and write "
            "<data_dir>/raw/<task>/records.jsonl and snapshot.json. DVC tracks the folder "
            "(`dvc repro ingest`); `taco data push` sends it to the remote."
        ),
    )
    _params_arg(p)
    return _run_ingest


def _run_ingest(args: argparse.Namespace) -> int:
    from taco.config import load_params
    from taco.sources import ingest

    snapshot = ingest(load_params(args.params))
    sys.stdout.write(json.dumps(snapshot) + "\n")
    return 0


def _add_prepare(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "prepare",
        help="normalise, dedupe, filter, segment and group-split the raw snapshot",
        description=(
            "Turn <data_dir>/raw/<task>/ into <data_dir>/prepared/<task>/{train,val,test}.jsonl "
            "(Example rows) and stats.json (counts, length percentiles, dropped share)."
        ),
    )
    _params_arg(p)
    return _run_prepare


def _run_prepare(args: argparse.Namespace) -> int:
    from taco.config import load_params
    from taco.data import prepare

    stats = prepare(load_params(args.params))
    sys.stdout.write(json.dumps({"rows": stats["rows"], "dropped_share": stats["dropped_share"]}))
    sys.stdout.write("\n")
    return 0


def _add_validate(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "validate",
        help="Great Expectations gate on the prepared splits (exit 1 when it fails)",
        description=(
            "Check the prepared splits with the task's Great Expectations suite and write "
            "<data_dir>/reports/validation.json. Exits 1 with a one-paragraph summary when any "
            "expectation fails, so nothing downstream runs on bad data."
        ),
    )
    _params_arg(p)
    return _run_validate


def _run_validate(args: argparse.Namespace) -> int:
    from taco.config import load_params
    from taco.validation import summary, validate

    report = validate(load_params(args.params))
    if not report["success"]:
        print(f"taco: validation failed: {summary(report)}", file=sys.stderr)
        return 1
    logging.getLogger("taco.validation").info(summary(report))
    return 0


def _add_data(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "data",
        help="DVC data versions: push to the remote, restore an earlier raw snapshot",
        description=(
            "push: send every DVC-tracked output (raw snapshot, prepared splits) to the remote "
            "in params.yaml's ingest.remote, only after a passing validation. restore: bring "
            "back the raw snapshot that git revision REV (or DVC hash) recorded, from the "
            "remote; works on a fresh clone."
        ),
    )
    _params_arg(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    push = actions.add_parser("push", help="dvc push, after a passing validation")
    push.add_argument("--force", action="store_true", help="push even if validation failed")
    restore = actions.add_parser("restore", help="restore the raw snapshot of a git revision")
    restore.add_argument("--rev", default="HEAD", help="git revision or DVC .dir hash")
    restore.add_argument("--out", default=None, help="folder to write (default: in place)")
    return _run_data


def _run_data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from taco.config import load_params
    from taco.versioning import VersioningError, push, restore

    params = load_params(args.params)
    try:
        if args.action == "push":
            sys.stdout.write(f"pushed to {push(params, Path.cwd(), force=args.force)}\n")
        else:
            out = Path(args.out) if args.out else None
            sys.stdout.write(f"restored {restore(params, Path.cwd(), args.rev, out)}\n")
    except VersioningError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _add_teacher(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "teacher",
        help="target-LLM outputs on the uncompressed prompts of the prepared splits",
        description=(
            "Ask the LLM of params.yaml's llm section (default: the embedded SmolLM2-135M, "
            "greedy, llm.max_new_tokens tokens) to do the task on every uncompressed prompt of "
            "<data_dir>/prepared/<task>/{train,val,test}.jsonl and write "
            "<data_dir>/teacher/<task>/{split}.jsonl and meta.json. Answers are cached on disk, "
            "so a rerun or an interrupted run costs almost nothing."
        ),
    )
    _params_arg(p)
    p.add_argument("--task", default=None, help="task to run (default: base.task)")
    p.add_argument(
        "--split", action="append", default=None, help="split to run; repeatable (default: all)"
    )
    p.add_argument("--limit", type=int, default=None, help="first N rows per split (smoke runs)")
    return _run_teacher


def _run_teacher(args: argparse.Namespace) -> int:
    from taco.config import load_params
    from taco.teacher import TeacherError, run_teacher

    try:
        meta = run_teacher(
            load_params(args.params), task_name=args.task, splits=args.split, limit=args.limit
        )
    except TeacherError as exc:
        print(f"taco: error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps({"splits": meta["splits"], "seconds": meta["seconds"]}) + "\n")
    return 0


def _add_warmstart(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "warmstart",
        help="supervised keep/drop warm start of a fresh compressor head",
        description=(
            "Label the first warmstart.max_examples training contexts with keep/drop words "
            "(teacher: self_information from a local causal LM, or llm: deletion-only "
            "compression by the configured LLM), train the encoder with cross-entropy and save "
            "<data_dir>/models/warmstart/. Skipped when train.base_model is a compressor."
        ),
    )
    _params_arg(p)
    return _run_warmstart


def _run_warmstart(args: argparse.Namespace) -> int:
    from taco.config import load_params
    from taco.warmstart import run_warmstart

    record = run_warmstart(load_params(args.params))
    keys = ("skipped", "labelled", "filtered", "loss_first_epoch", "loss_last_epoch", "seconds")
    sys.stdout.write(json.dumps({k: record[k] for k in keys if k in record}) + "\n")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "train",
        help="TACO-RL: REINFORCE fine-tuning against the target LLM (resumable)",
        description=(
            "Fine-tune the compressor with REINFORCE: k sampled compressions per prompt, "
            "rewards from the target LLM (reward.name), leave-one-out baseline. Logs to "
            "<data_dir>/reports/train/ (DVCLive), checkpoints to <data_dir>/checkpoints/train/ "
            "(a rerun after a crash resumes), final model to <data_dir>/models/taco/. Under "
            "`torchrun --nproc_per_node=N -m taco train` it runs data-parallel."
        ),
    )
    _params_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return _run_train


def _run_train(args: argparse.Namespace) -> int:
    from taco.config import load_params
    from taco.train import train
    from taco.train_state import TrainError

    try:
        record = train(load_params(args.params), progress=not args.no_progress)
    except TrainError as exc:
        raise UsageError(str(exc)) from None
    keys = ("steps", "bad_steps", "seconds", "first_steps", "last_steps")
    sys.stdout.write(json.dumps({k: record[k] for k in keys}) + "\n")
    return 0


# ---------------------------------------------------------------------------------- main

_COMMANDS: list[Callable[[argparse._SubParsersAction], Handler]] = [
    _add_compress,
    _add_ingest,
    _add_prepare,
    _add_validate,
    _add_data,
    _add_teacher,
    _add_warmstart,
    _add_train,
]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = _Parser(
        prog="taco",
        description=(
            "taco trains, evaluates, versions and serves task-aware prompt compressors "
            "(TACO-RL). Stages: ingest, prepare, validate, teacher, warmstart, train, "
            "evaluate, gate, package; each is also a `dvc repro` stage and an Airflow task."
        ),
    )
    parser.add_argument("--version", action="version", version=f"taco {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    handlers: dict[str, Handler] = {}
    for add in _COMMANDS:
        before = set(sub.choices)
        handler = add(sub)
        for name in set(sub.choices) - before:
            handlers[name] = handler
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    from taco.config import ConfigError
    from taco.schema import SchemaError

    try:
        return handlers[args.command](args)
    except (UsageError, ConfigError, SchemaError, ValueError, TypeError, FileNotFoundError) as exc:
        if args.verbose:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"taco: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taco: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
