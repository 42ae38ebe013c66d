"""Reading parallel corpora: one sentence per line, UTF-8, plain or gzip.

Errors name the file and the line and become one-line CLI errors with exit code 2.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from inc_transformer_mt.defaults import MULTI30K_SPLITS
from inc_transformer_mt.errors import RuntimeFailure, UserError

__all__ = [
    "MULTI30K_ENV",
    "MULTI30K_URL",
    "fetch_multi30k",
    "multi30k_dir",
    "multi30k_split",
    "parse_lines",
    "read_lines",
    "read_parallel",
]

logger = logging.getLogger(__name__)

MULTI30K_ENV = "INC_MT_MULTI30K"
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{name}"
MULTI30K_LANGS = ("en", "de", "fr")


@contextlib.contextmanager
def _open_bytes(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, gunzipped when it starts with the gzip magic; opened once, so a pipe
    (``translate <(zcat ...)``) works too."""
    with open(path, "rb") as fh:
        if fh.peek(2)[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                yield gz
        else:
            yield fh


def parse_lines(stream: IO[bytes], name: str, *, allow_empty: bool = False) -> list[str]:
    """Decode a binary stream of UTF-8 lines; errors name ``name`` and the 1-based line."""
    lines: list[str] = []
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{name}:{number}: invalid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            ) from None
        text = text.rstrip("\r\n")
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        if not allow_empty and not text.strip():
            raise UserError(f"{name}:{number}: empty line (every line must hold one sentence)")
        lines.append(text)
    return lines


def read_lines(path: str | Path, *, allow_empty: bool = False, what: str = "file") -> list[str]:
    """All lines of a UTF-8 text file (plain or gzip), without line endings.

    Raises:
        UserError: missing file, invalid gzip, invalid UTF-8, or an empty line (unless ``allow_empty``);
            the message names the file and the 1-based line.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: {what} not found")
    if path.is_dir():  # a pipe or a process substitution (/dev/fd/63) is read as it is
        raise UserError(f"{path}: {what} is a directory")
    try:
        with _open_bytes(path) as fh:
            return parse_lines(fh, str(path), allow_empty=allow_empty)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.__class__.__name__}: {exc})") from None


def read_parallel(source: str | Path, reference: str | Path) -> tuple[list[str], list[str]]:
    """Source and reference sentences, checked to have the same number of lines."""
    src = read_lines(source, what="source file")
    ref = read_lines(reference, what="reference file")
    if len(src) != len(ref):
        raise UserError(
            f"line-count mismatch: {source} has {len(src)} lines but {reference} has {len(ref)}"
        )
    return src, ref


def multi30k_dir(explicit: str | Path | None = None) -> Path:
    """Where the Multi30k raw text lives.

    Order: the explicit path, ``$INC_MT_MULTI30K``, then ``shared/data/multi30k`` in or beside the
    working directory or the repository this package was installed from.
    """
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise UserError(f"{path}: Multi30k directory not found")
        return path
    env = os.environ.get(MULTI30K_ENV)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise UserError(f"{MULTI30K_ENV}={env}: directory not found")
        return path
    here = Path(__file__).resolve()
    roots = [Path.cwd(), *Path.cwd().parents, *here.parents]
    for root in roots:
        for candidate in (root / "shared" / "data" / "multi30k", root / ".." / "shared" / "data" / "multi30k"):
            if (candidate / "val.en.gz").is_file():
                return candidate.resolve()
    raise UserError(
        "Multi30k not found: pass --data-dir, set INC_MT_MULTI30K, or run `inc-mt fetch-data` "
        "(needs internet access)"
    )


def multi30k_split(split: str, lang: str, data_dir: str | Path | None = None) -> Path:
    """Path of one Multi30k file, e.g. ``multi30k_split("val", "en")``."""
    if split not in MULTI30K_SPLITS:
        raise UserError(f"unknown Multi30k split {split!r} (choose from {', '.join(MULTI30K_SPLITS)})")
    if lang not in MULTI30K_LANGS:
        raise UserError(f"unknown Multi30k language {lang!r} (choose from {', '.join(MULTI30K_LANGS)})")
    base = multi30k_dir(data_dir)
    for name in (f"{split}.{lang}.gz", f"{split}.{lang}"):
        if (base / name).is_file():
            return base / name
    raise UserError(f"{base}: no {split}.{lang}(.gz) in the Multi30k directory")


Opener = Callable[[str], "object"]


def fetch_multi30k(
    dest: str | Path,
    splits: tuple[str, ...] = MULTI30K_SPLITS,
    langs: tuple[str, ...] = ("en", "de"),
    opener: Opener | None = None,
) -> list[Path]:
    """Download Multi30k raw files from the public repository into ``dest`` (atomic per file).

    ``opener`` maps a URL to a binary file-like object (default ``urllib.request.urlopen``); tests pass
    one that reads a local copy. Existing files are kept. Each file is checked to be gzip with UTF-8 text.
    """
    opener = opener or (lambda url: urllib.request.urlopen(url, timeout=60))
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest}: exists and is not a directory; give a directory for the Multi30k files")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{dest}: cannot create the directory ({exc.strerror})") from None
    written: list[Path] = []
    for split in splits:
        for lang in langs:
            name = f"{split}.{lang}.gz"
            target = dest / name
            if target.is_file():
                continue
            url = MULTI30K_URL.format(name=name)
            logger.info("fetching %s", url)
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    try:
                        response = opener(url)
                    except OSError as exc:
                        raise RuntimeFailure(f"cannot download {url}: {exc}") from None
                    with response:
                        shutil.copyfileobj(response, out)
                read_lines(tmp, allow_empty=True, what=f"downloaded {name}")
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            written.append(target)
    return written
