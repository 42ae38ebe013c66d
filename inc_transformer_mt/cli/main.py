"""inc-mt: translate, evaluate, tune, check and benchmark TensorFlow Transformer translation graphs.

Exit codes: 0 ok; 1 a check failed (tune met no criterion, regress found a regression, optimize changed a
translation); 2 bad input or usage (one ``error:`` line naming the file, line or key); 3 a runtime failure
(the input was fine, running it failed: a kernel error, a dead worker, a full disk; one ``error:`` line);
130 interrupted (Ctrl-C), 143 terminated (SIGTERM; worker processes end with the command). ``--debug`` adds the traceback. TensorFlow is imported only by the commands that run a
graph, so ``inc-mt --help`` is instant. Each command lives in its own module under ``cli/commands``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence

from inc_transformer_mt import __version__
from inc_transformer_mt.cli.commands import COMMANDS
from inc_transformer_mt.cli.options import quiet_tensorflow
from inc_transformer_mt.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_RUNTIME_FAILURE,
    EXIT_TERMINATED,
    RuntimeFailure,
    StdoutFailure,
    UserError,
)

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with the package's error line: ``usage`` then one ``error:`` line naming the argument, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="inc-mt", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"inc_transformer_mt.cli.commands.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run, quiet_tf=getattr(module, "QUIET_TENSORFLOW", True))
    return parser


class Terminated(BaseException):
    """SIGTERM arrived; raised in the main thread so that every ``with`` block (worker pools, staging
    directories) cleans up on the way out."""


def _terminated(signum, frame) -> None:
    raise Terminated


def _check_stdout() -> None:
    """Python sets ``sys.stdout`` to None when the descriptor was closed (``>&-``): a runtime failure, before any
    work (a closed stdin is checked where it is read: ``translate -``)."""
    if sys.stdout is None:
        raise StdoutFailure("cannot write to stdout: it is closed")


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:
        raise StdoutFailure.from_error(exc) from None


def _stdout_broken() -> bool:
    """Whether stdout cannot be written (an OSError without a file name most often came from a print)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        return True
    return False


def _quiet_stdout() -> None:
    """Stop the interpreter from flushing a broken stdout again at exit (which would print a second error)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (callable from code: ``main(["evaluate", "--limit", "10"])``)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before the command started (while TensorFlow was still importing)
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.quiet_tf:
        quiet_tensorflow()
    main_thread = threading.current_thread() is threading.main_thread()  # only there can signals be handled
    if main_thread:
        previous = signal.signal(signal.SIGTERM, _terminated)  # a CI timeout: unwind, close workers, one line
    try:
        _check_stdout()
        code = int(args.func(args))
        _flush_stdout()
        return code
    except UserError as exc:
        return _fail(str(exc), exc.exit_code, args.debug)
    except StdoutFailure as exc:
        _quiet_stdout()
        return _fail(f"runtime failure: {exc}", exc.exit_code, args.debug)
    except RuntimeFailure as exc:
        return _fail(f"runtime failure: {exc}", exc.exit_code, args.debug)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED, args.debug)
    except Terminated:
        return _fail("terminated (SIGTERM)", EXIT_TERMINATED, args.debug)
    except BrokenPipeError:  # `inc-mt translate ... | head`: the reader has all it wanted
        _quiet_stdout()
        return 0
    except OSError as exc:  # a full disk, a read-only output, a vanished file: the environment, not the input
        if exc.filename is None and _stdout_broken():
            _quiet_stdout()
            return _fail(f"runtime failure: {StdoutFailure.from_error(exc)}", EXIT_RUNTIME_FAILURE, args.debug)
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(f"runtime failure: {exc.strerror or exc}{where}", EXIT_RUNTIME_FAILURE, args.debug)
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still ends in one line and a known code
        hint = "" if args.debug else " (run with --debug for the traceback)"
        return _fail(f"runtime failure: unexpected {type(exc).__name__}: {exc}{hint}", EXIT_RUNTIME_FAILURE,
                     args.debug)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
