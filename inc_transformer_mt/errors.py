"""The outcomes a command can end in, and their exit codes.

Three kinds of failure, kept apart so that a user (and a CI script) can tell them apart:

- :class:`UserError`: bad input or usage (a file, a key, a line the user can fix). Exit 2.
- a failed check (``tune`` met no criterion, ``regress`` found a regression): not an exception, the
  command returns :data:`EXIT_CHECK_FAILED`. Exit 1.
- :class:`RuntimeFailure`: the input was fine but running it failed (a TensorFlow kernel error, a
  translation worker that died or timed out, a plugin that did not load, a full disk). Exit 3.

The CLI prints each as one ``error:`` line; ``--debug`` adds the traceback.
"""

from __future__ import annotations

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CHECK_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUNTIME_FAILURE",
    "EXIT_TERMINATED",
    "RuntimeFailure",
    "StdoutFailure",
    "UserError",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_RUNTIME_FAILURE = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM), e.g. a CI timeout


class UserError(Exception):
    """Bad input (file, key, line). The CLI prints ``error: <message>`` and exits with code 2."""

    exit_code = EXIT_BAD_INPUT


class RuntimeFailure(Exception):
    """Valid input, failed run (kernel error, dead or silent worker, missing plugin). Exit code 3."""

    exit_code = EXIT_RUNTIME_FAILURE


class StdoutFailure(RuntimeFailure):
    """Standard output is closed or cannot be written (``>&-``, ``>/dev/full``). Exit code 3."""

    @classmethod
    def from_error(cls, exc: BaseException) -> StdoutFailure:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return cls(f"cannot write to stdout ({reason})")
