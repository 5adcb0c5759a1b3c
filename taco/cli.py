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

from taco import __version__

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


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
    p.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="input text (default: stdin)")
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
    p.add_argument("--question", default="", help="task question the encoder reads (never compressed)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "auto"),
        default="float32",
        help="encoder precision (auto: bf16 where the hardware supports it)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return _run_compress


def _run_compress(args: argparse.Namespace) -> int:
    from taco.compressor import Compressor

    text = _read_input(args.file)
    force = tuple(args.force_token) if args.force_token is not None else ("\n",)
    compressor = Compressor.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    result = compressor.compress(
        text,
        rate=args.rate,
        target_tokens=args.target_tokens,
        force_tokens=force,
        keep_digits=args.keep_digits,
        question=args.question,
    )
    if args.json:
        out = result.to_llmlingua_dict()
        out["taco"] = result.to_dict()
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result.compressed_prompt + "\n")
    return 0


# ---------------------------------------------------------------------------------- main

_COMMANDS: list[Callable[[argparse._SubParsersAction], Handler]] = [_add_compress]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(
        prog="taco",
        description=(
            "taco trains, evaluates, versions and serves task-aware prompt compressors "
            "(TACO-RL). Stages: ingest, prepare, validate, teacher, warmstart, train, "
            "evaluate, gate, package; each is also a `dvc repro` stage and an Airflow task."
        ),
    )
    parser.add_argument("--version", action="version", version=f"taco {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"taco: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taco: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
