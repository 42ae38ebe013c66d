"""Errors a user can act on: printed as one line, exit code 2."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input (file, key, line). The CLI prints ``error: <message>`` and exits with code 2."""

    exit_code = 2
