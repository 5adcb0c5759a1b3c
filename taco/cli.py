"""The `taco` command line: one subcommand per pipeline stage (the ``STAGES`` table) plus
``compress``, ``data`` and ``params``.

A stage subcommand loads params, logs them resolved, calls its module's ``run(params, root)``
and prints the summary as one JSON line. A ``TacoError`` prints one line and exits with its
code (``UserError`` 2, ``StageFailed`` 1); any other exception is a bug and shows its
traceback. Heavy libraries are imported inside handlers, so ``taco --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import logging
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from taco import __version__
from taco.errors import TacoError, UserError

if TYPE_CHECKING:
    from taco.compress.selection import TokenCounter
    from taco.config import Params

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]

# Offline by construction (the Makefile exports the same): a hub id that is not downloaded
# fails at once with a clear error instead of retrying the network for half a minute, and no
# library phones home. Set a variable yourself (HF_HUB_OFFLINE=0) to allow downloads.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "true",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``taco: error: ...``, exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"taco: error: {message} (see `{self.prog} --help`)\n")


def _read_input(path: str) -> str:
    # newline="": the text's own line breaks (CRLF stays CRLF), never translated
    if path == "-":
        try:
            return sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"standard input: not UTF-8 text (byte {exc.start})") from None
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        raise UserError(f"input file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from None


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
        type=_unescape,
        metavar="T",
        help="a string always kept, and kept whole (e.g. '?', a URL, a path); repeatable; "
        "\\n, \\t, \\r and \\\\ mean a line break, a tab, a carriage return and a "
        "backslash. Line breaks are kept anyway (see --no-keep-newlines)",
    )
    p.add_argument(
        "--keep-newlines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the line breaks and indentation of kept lines (default: yes); "
        "--no-keep-newlines puts the kept words on one line",
    )
    p.add_argument(
        "--keep-digits",
        action="store_true",
        help="always keep numbers, each whole (1.5, 250,000, 2024-05-31, $12.50, 27.5%%)",
    )
    p.add_argument(
        "--unit",
        choices=("word", "sentence", "line"),
        default=None,
        help="what the ranking keeps whole: word, sentence or line (default: the model's "
        "taco_unit, else word); whole spans first, then the start of the next one fills "
        "the budget (a partial last span)",
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
        help="encoder precision; int8: dynamic quantization on CPU (ONNX Runtime, fused; the "
        "graph is built once per model into $TACO_CACHE_DIR/onnx; TACO_INT8_RUNTIME=torch "
        "uses torch's); auto: the fastest of bf16 (where native), int8 and float32 whose "
        "decisions agree with float32's on >= 99%% of calibration words, fast paths tried "
        "with 128-token encoder chunks first (checked at load; -v says which, --json's "
        "taco.metadata too)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return _run_compress


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def _unescape(value: str) -> str:
    """``--force-token``: ``\\n``, ``\\t``, ``\\r``, ``\\\\`` typed in a shell mean a line
    break, a tab, a carriage return, a backslash; any other backslash stays as typed."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], value)


def _counter(spec: str | None) -> TokenCounter | None:
    """``--tokenizer``: the token counter the budget is counted in (None: the encoder's)."""
    if spec is None:
        return None
    from taco.compress.selection import HFTokenCounter, tiktoken_counter

    try:
        if spec.startswith("tiktoken:"):
            return tiktoken_counter(spec.split(":", 1)[1])
        from taco.llm.embedded import load_tokenizer

        return HFTokenCounter(load_tokenizer(None if spec == "embedded" else spec))
    except (OSError, ValueError, ImportError, KeyError) as exc:
        raise UserError(f"--tokenizer {spec!r}: cannot load it ({exc})") from None


def _run_compress(args: argparse.Namespace) -> int:
    from taco.compress.compressor import Compressor
    from taco.compress.selection import check_budget_args

    check_budget_args(args.rate, args.target_tokens)  # before the (slow) model load
    text = _read_input(args.file)
    force = tuple(args.force_token or ())
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
        keep_newlines=args.keep_newlines,
    )
    if result.origin_tokens and not result.compressed_prompt:
        budget = (
            f"--target-tokens {args.target_tokens}"
            if args.target_tokens is not None
            else f"--rate {args.rate:g} of {result.origin_tokens} tokens"
        )
        log.warning("nothing was kept: the budget (%s) is smaller than any word; raise it", budget)
    if args.json:
        out = result.to_llmlingua_dict()
        out["taco"] = result.to_dict()
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result.compressed_prompt + "\n")
    return 0


# ------------------------------------------------------------------------------ stages


def _params_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params",
        default=None,
        metavar="FILE",
        help="params file (default: params.yaml, or the embedded defaults when there is none)",
    )


def _load_params(args: argparse.Namespace) -> Params:
    """``--params FILE`` loaded and validated; a named file that is missing is an error (a
    typo must not silently run the defaults), a missing default params.yaml gives defaults."""
    from taco.config import load_params

    if args.params is not None and not Path(args.params).is_file():
        raise UserError(f"--params {args.params}: file not found")
    return load_params(args.params or "params.yaml")


def _params_command(
    sub: argparse._SubParsersAction, name: str, help: str, description: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """The parser of a subcommand that reads params.yaml: ``name`` with ``--params FILE``
    (``kwargs`` go to ``add_parser``, e.g. an epilog)."""
    p = sub.add_parser(name, help=help, description=description, **kwargs)
    _params_arg(p)
    return p


def _params_of(args: argparse.Namespace) -> Params:
    """The params file named by ``--params`` (``_params_arg``), loaded and validated."""
    return _load_params(args)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One pipeline stage: ``taco NAME`` runs ``MODULE.run(params, root, **options)`` and
    prints the summary dict it returns as one JSON line. ``options`` are extra argparse
    arguments (flags, kwargs) passed to ``run`` by their dest names."""

    name: str
    module: str
    help: str
    description: str
    options: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()


#: The pipeline in order: the same names in params.yaml, dvc.yaml and the Airflow DAG.
STAGES: tuple[Stage, ...] = (
    Stage(
        "ingest",
        "taco.data.ingest",
        "snapshot the configured source into data/raw/<task>/",
        "Read the source named by params.yaml's ingest section (default: function/docstring "
        "pairs mined from this Python's standard library) and write "
        "<data_dir>/raw/<task>/records.jsonl and snapshot.json. DVC tracks the folder "
        "(`dvc repro ingest`); `taco data push` sends it to the remote.",
    ),
    Stage(
        "prepare",
        "taco.data.prepare",
        "normalise, dedupe, filter, segment and group-split the raw snapshot",
        "Turn <data_dir>/raw/<task>/ into <data_dir>/prepared/<task>/{train,val,test}.jsonl "
        "(Example rows) and stats.json (counts, length percentiles, dropped share).",
    ),
    Stage(
        "validate",
        "taco.data.validate",
        "Great Expectations gate on the prepared splits (exit 1 when it fails)",
        "Check the prepared splits with the task's Great Expectations suite and write "
        "<data_dir>/reports/validation.json. Exits 1 with a one-paragraph summary when any "
        "expectation fails, so nothing downstream runs on bad data.",
    ),
    Stage(
        "teacher",
        "taco.tasks.teacher",
        "target-LLM outputs on the uncompressed prompts of the prepared splits",
        "Ask the LLM of params.yaml's llm section (default: the embedded SmolLM2-135M, "
        "greedy, llm.max_new_tokens tokens) to do the task on every uncompressed prompt of "
        "<data_dir>/prepared/<task>/{train,val,test}.jsonl and write "
        "<data_dir>/teacher/<task>/{split}.jsonl and meta.json. Answers are cached on disk, "
        "so a rerun or an interrupted run costs almost nothing.",
        (
            (("--task",), {"default": None, "help": "task to run (default: base.task)"}),
            (
                ("--split",),
                {"action": "append", "default": None, "help": "split; repeatable (default: all)"},
            ),
            (("--limit",), {"type": int, "default": None, "help": "first N rows per split"}),
        ),
    ),
    Stage(
        "warmstart",
        "taco.rl.warmstart",
        "supervised keep/drop warm start of a fresh compressor head",
        "Label the first warmstart.max_examples training contexts with keep/drop words "
        "(self_information from a local causal LM, llm: deletion-only compression by the "
        "configured LLM, or overlap with the teacher output), train the encoder with "
        "cross-entropy and save <data_dir>/models/warmstart/. Skipped when train.base_model "
        "is a compressor or warmstart.labels is none.",
    ),
    Stage(
        "train",
        "taco.rl.train",
        "TACO-RL: REINFORCE fine-tuning against the target LLM (resumable)",
        "Fine-tune the compressor with REINFORCE: k sampled compressions per prompt, "
        "rewards from the target LLM (reward.name), leave-one-out baseline. Logs to "
        "<data_dir>/reports/train/ (DVCLive), checkpoints to <data_dir>/checkpoints/train/ "
        "(a rerun after a crash resumes), final model to <data_dir>/models/taco/. Under "
        "`torchrun --nproc_per_node=N -m taco train` it runs data-parallel.",
        ((("--no-progress",), {"action": "store_true", "help": "no progress bar"}),),
    ),
    Stage(
        "evaluate",
        "taco.eval.evaluate",
        "trained vs every baseline at equal token budget on the test split, with CIs",
        "Compress the first evaluate.max_rows test rows with the trained model and every "
        "baseline (uncompressed, random, truncate, selective_context, question_overlap, start, "
        "production, llmlingua) at each of evaluate.rates, to the same budget in the target "
        "LLM's tokens; ask the LLM (cached), score against the gold references and the "
        "teacher outputs, and write <data_dir>/reports/eval/ (metrics.json with paired "
        "bootstrap CIs and recommended_rate, rows.jsonl, report.md, rate_quality.png, plots/).",
        ((("--no-progress",), {"action": "store_true", "help": "no progress bar"}),),
    ),
    Stage(
        "gate",
        "taco.eval.gate",
        "pass/fail of the trained model from the evaluation (exit 0 either way)",
        "Check the evaluation against params.yaml's gate thresholds (minimum score, gains over "
        "start and the best baseline, rate deviation, latency, the champion) and write "
        "<data_dir>/reports/gate.json with every check and one sentence per failed check. "
        "Exits 0 whether the gate passes or not; non-zero only on errors.",
    ),
    Stage(
        "package",
        "taco.serving.packaging",
        "register the gated model in the BentoML store and build its bento",
        "Refuse unless <data_dir>/reports/gate.json says the gate passed (--force overrides, "
        "logged). Register <data_dir>/models/taco/ as the BentoML model <package.name>-<task> "
        "(labels task and stage=candidate; metadata: evaluation metrics, gate decision and "
        "reasons, recommended_rate, data version from dvc.lock, git commit, resolved params), "
        "build the bento from bentofile.yaml (no network) and write both tags to "
        "<data_dir>/reports/package.json.",
        (
            (
                ("--force",),
                {"action": "store_true", "help": "package even if the gate did not pass (logged)"},
            ),
        ),
    ),
)


def _section_epilog(section: str) -> str:
    """The epilog of ``taco <stage> --help``: params.yaml section ``section`` with every key's
    default and help, from the config fields' metadata (``taco.config.explain``)."""
    from taco.config import explain

    return (
        f"params.yaml keys of `{section}` (defaults; `taco params --explain` lists every "
        f"section):\n\n{explain(only=[section])}"
    )


def _add_stage(sub: argparse._SubParsersAction, stage: Stage) -> Handler:
    p = _params_command(
        sub,
        stage.name,
        stage.help,
        textwrap.fill(stage.description, 88),
        epilog=_section_epilog(stage.name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flags, kwargs in stage.options:
        p.add_argument(*flags, **kwargs)
    dests = [p._option_string_actions[flags[0]].dest for flags, _ in stage.options]

    def handler(args: argparse.Namespace) -> int:
        from taco.config import to_dict

        params = _params_of(args)
        log.info("%s: resolved params %s", stage.name, json.dumps(to_dict(params)))
        run = importlib.import_module(stage.module).run
        summary = run(params, Path.cwd(), **{d: getattr(args, d) for d in dests})
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return 0

    return handler


def _add_params(sub: argparse._SubParsersAction) -> Handler:
    p = _params_command(
        sub,
        "params",
        "print the resolved params (with --explain: every key with its help)",
        "Print params.yaml resolved against the embedded defaults, as YAML. With --explain "
        "every key of every section is listed with its value and what it does.",
    )
    p.add_argument("--explain", action="store_true", help="annotate every key with its help")
    return _run_params


def _run_params(args: argparse.Namespace) -> int:
    import yaml

    from taco.config import explain, to_dict

    params = _params_of(args)
    if args.explain:
        sys.stdout.write(explain(params))
    else:
        sys.stdout.write(yaml.safe_dump(to_dict(params), sort_keys=False))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "report",
        help="a report for people: one self-contained HTML page (and Markdown) of the run",
        description=(
            "Render <data_dir>/reports/run/report.html (images embedded) and report.md from "
            "the evaluation, the gate decision and the training run: data version, training "
            "curve, rate-quality plot, comparison table with CIs, gate reasons, recommended "
            "rate and example compressions side by side."
        ),
    )
    _params_arg(p)

    def handler(args: argparse.Namespace) -> int:
        from pathlib import Path

        from taco.eval.report import render

        paths = render(_load_params(args), Path.cwd())
        sys.stdout.write(f"{paths['html']}\n{paths['markdown']}\n")
        return 0

    return handler


def _add_data(sub: argparse._SubParsersAction) -> Handler:
    p = _params_command(
        sub,
        "data",
        "DVC data versions: push to the remote, restore an earlier raw snapshot",
        "push: send every DVC-tracked output (raw snapshot, prepared splits) to the remote "
        "in params.yaml's ingest.remote, only after a passing validation. restore: bring "
        "back the raw snapshot that git revision REV (or DVC hash) recorded, from the "
        "remote; works on a fresh clone.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    push = actions.add_parser("push", help="dvc push, after a passing validation")
    push.add_argument("--force", action="store_true", help="push even if validation failed")
    restore = actions.add_parser("restore", help="restore the raw snapshot of a git revision")
    restore.add_argument("--rev", default="HEAD", help="git revision or DVC .dir hash")
    restore.add_argument("--out", default=None, help="folder to write (default: in place)")
    return _run_data


def _run_data(args: argparse.Namespace) -> int:
    from taco.versioning import push, restore

    params = _params_of(args)
    if args.action == "push":
        sys.stdout.write(f"pushed to {push(params, Path.cwd(), force=args.force)}\n")
    else:
        out = Path(args.out) if args.out else None
        sys.stdout.write(f"restored {restore(params, Path.cwd(), args.rev, out)}\n")
    return 0


# ------------------------------------------------------------------- models / promote / serve


def _add_models(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "models",
        help="list the packaged taco models (stage, task, key metrics, date)",
        description=(
            "List the taco models in the BentoML store ($BENTOML_HOME; `make` uses .bentoml/), "
            "newest first: tag, stage (candidate, production, archived), task, creation date, "
            "recommended rate, gate decision and the trained compressor's scores at that rate."
        ),
    )
    p.add_argument("--task", default=None, help="only this task's models")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handler(args: argparse.Namespace) -> int:
        from taco.serving.registry import format_table, list_models

        records = list_models(args.task)
        if args.json:
            rows = [
                {
                    "tag": r.tag,
                    "stage": r.stage,
                    "task": r.task,
                    "created": r.created.isoformat(),
                    "recommended_rate": r.recommended_rate,
                    "gate_passed": r.metadata.get("gate_passed"),
                    "forced": r.metadata.get("forced", False),
                    "key_metrics": r.key_metrics(),
                }
                for r in records
            ]
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        else:
            sys.stdout.write(format_table(records))
        return 0

    return handler


def _add_promote(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "promote",
        help="label a packaged model stage=production (the previous one becomes archived)",
        description=(
            "Label the BentoML model TAG (see `taco models`) stage=production; the production "
            "model of its task until now becomes archived. `taco serve` and the gate's "
            "`champion: production` then use it."
        ),
    )
    p.add_argument("tag", metavar="TAG", help="model tag, e.g. taco-code:abc123")

    def handler(args: argparse.Namespace) -> int:
        from taco.serving.registry import promote

        record, archived = promote(args.tag)
        was = f" (archived: {', '.join(archived)})" if archived else ""
        sys.stdout.write(f"{record.tag} is now the production model of task {record.task}{was}\n")
        return 0

    return handler


def _add_serve(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "serve",
        help="serve the production model (else the latest candidate) on 127.0.0.1",
        description=(
            "Serve a packaged model with `bentoml serve`: serve.model when set, else the "
            "production model of base.task, else its latest packaged candidate (saying so). "
            "Prints the URL, the OpenAPI page and a curl example. With nothing packaged, says "
            "to run `make run` first."
        ),
    )
    _params_arg(p)
    p.add_argument("--host", default=None, help="bind address (default: serve.host)")
    p.add_argument("--port", type=int, default=None, help="port (default: serve.port)")
    return _run_serve


def _run_serve(args: argparse.Namespace) -> int:
    import os
    import subprocess

    from taco.serving.registry import bento_for, serving_choice

    params = _load_params(args)
    host, port = args.host or params.serve.host, args.port or params.serve.port
    record, why = serving_choice(params)
    bento = bento_for(record.tag)
    cmd = [sys.executable, "-m", "bentoml", "serve", "--host", host, "--port", str(port)]
    env = dict(os.environ)
    if bento is not None:
        cmd.insert(4, bento)
    else:  # packaged without a bento (package.build: false): the service from source
        cmd[4:4] = ["taco.serving.service:TacoCompressor", "--arg", f"model={record.tag}"]
        env["TACO_PARAMS"] = os.path.abspath(args.params or "params.yaml")
    url = f"http://{host}:{port}"
    auth = params.serve.api_key_env
    header = f' -H "Authorization: Bearer ${auth}"' if auth else ""
    body = '{"prompt": "Your long prompt here ...", "rate": 0.5}'
    sys.stdout.write(
        f"serving {record.tag} (stage {record.stage}, task {record.task}): {why}\n"
        f"  {'bento ' + bento if bento else 'from source (no bento was built for it)'}\n"
        f"  URL:     {url}\n"
        f"  OpenAPI: {url}/docs\n"
        f"  try:     curl -s -X POST {url}/compress -H 'content-type: application/json'"
        f"{header} -d '{body}'\n"
    )
    sys.stdout.flush()
    return subprocess.call(cmd, env=env)


def _add_summary(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "summary",
        help="print the last pipeline run's summary (what `make run` prints at the end)",
        description=(
            "Print what the last run in this workspace produced: data version (DVC hash), "
            "reward curve start and end, the evaluation table, the gate's decision and "
            "reasons, the recommended rate and the bento to serve. With --json: the lineage "
            "record that the taco_retrain DAG returns."
        ),
    )
    _params_arg(p)
    p.add_argument("--json", action="store_true", help="print the lineage record as JSON")

    def handler(args: argparse.Namespace) -> int:
        from pathlib import Path

        from taco import pipeline

        params = _load_params(args)
        if args.json:
            sys.stdout.write(json.dumps(pipeline.lineage(Path.cwd(), params), indent=2) + "\n")
        else:
            sys.stdout.write(pipeline.summary(Path.cwd(), params))
        return 0

    return handler


# ---------------------------------------------------------------------------------- main

_COMMANDS: list[Callable[[argparse._SubParsersAction], Handler]] = [
    _add_compress,
    *(functools.partial(_add_stage, stage=stage) for stage in STAGES),
    _add_data,
    _add_params,
    _add_report,
    _add_models,
    _add_promote,
    _add_serve,
    _add_summary,
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
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except TacoError as exc:
        if args.verbose:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "error" if isinstance(exc, UserError) else "failed"
        print(f"taco: {kind}: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("taco: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
