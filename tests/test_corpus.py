"""Reading corpora (plain, gz, UTF-8 checks) and the offline-tested Multi30k download path."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from inc_transformer_mt.data.corpus import fetch_multi30k, multi30k_dir, read_lines, read_parallel
from inc_transformer_mt.errors import RuntimeFailure, UserError

pytestmark = pytest.mark.unit


def test_plain_and_gzip_read_the_same(tmp_path):
    text = "\ufeffA man.\r\nZwei Hunde – im Schnee.\n"
    plain = tmp_path / "a.txt"
    plain.write_text(text, encoding="utf-8")
    gz = tmp_path / "a.txt.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert read_lines(plain) == read_lines(gz) == ["A man.", "Zwei Hunde – im Schnee."]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"ok\n\xffbad\n", r":2: invalid UTF-8 \(byte 0xff at column 1\)"),
        (b"ok\n\n", ":2: empty line"),
        (b"ok\n   \nfine\n", ":2: empty line"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "src.en"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as err:
        read_lines(path)
    assert str(path) in str(err.value)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "src.en.gz"
    path.write_bytes(gzip.compress(b"hello\n" * 100)[:-6])  # truncated: no CRC/size trailer
    with pytest.raises(UserError, match="cannot read"):
        read_lines(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_lines(tmp_path / "nope.txt")


def test_line_count_mismatch(tmp_path):
    (tmp_path / "s").write_text("a\nb\n")
    (tmp_path / "r").write_text("a\n")
    with pytest.raises(UserError, match="line-count mismatch: .*s has 2 lines but .*r has 1"):
        read_parallel(tmp_path / "s", tmp_path / "r")


def _fake_repository(root: Path) -> dict[str, bytes]:
    files = {}
    for split in ("train", "val", "test_2016_flickr"):
        for lang in ("en", "de"):
            files[f"{split}.{lang}.gz"] = gzip.compress(f"{split} {lang} sentence\n".encode())
    return files


def test_fetch_multi30k_offline_with_a_local_opener(tmp_path):
    files = _fake_repository(tmp_path)
    seen = []

    def opener(url):
        seen.append(url)
        return io.BytesIO(files[url.rsplit("/", 1)[-1]])

    written = fetch_multi30k(tmp_path / "m30k", opener=opener)
    assert len(written) == 6 and all(u.startswith("https://") for u in seen)
    assert multi30k_dir(tmp_path / "m30k") == tmp_path / "m30k"
    assert read_lines(tmp_path / "m30k" / "val.de.gz") == ["val de sentence"]
    # Present files are kept, nothing is downloaded again.
    assert fetch_multi30k(tmp_path / "m30k", opener=opener) == [] and len(seen) == 6


def test_fetch_failure_leaves_no_partial_file(tmp_path):
    def opener(url):
        return io.BytesIO(b"<html>not gzip, not utf-8 \xff</html>")

    with pytest.raises(UserError):
        fetch_multi30k(tmp_path / "m30k", splits=("val",), langs=("en",), opener=opener)
    assert list((tmp_path / "m30k").iterdir()) == []


def test_network_error_is_a_runtime_failure(tmp_path):
    """The network is the environment, not the input: exit 3, not 2."""
    def opener(url):
        raise OSError("no route to host")

    with pytest.raises(RuntimeFailure, match="cannot download"):
        fetch_multi30k(tmp_path / "m30k", splits=("val",), langs=("en",), opener=opener)
    assert list((tmp_path / "m30k").iterdir()) == []


def test_env_variable_points_to_the_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("INC_MT_MULTI30K", str(tmp_path))
    assert multi30k_dir() == tmp_path
    monkeypatch.setenv("INC_MT_MULTI30K", str(tmp_path / "missing"))
    with pytest.raises(UserError, match="INC_MT_MULTI30K"):
        multi30k_dir()


def test_fetch_multi30k_against_the_local_copy(tmp_path):
    """The download path, offline: an opener serving the shared local copy gives byte-identical files."""
    try:
        local = multi30k_dir()
    except UserError:
        pytest.skip("no local Multi30k copy on this machine")

    def opener(url):
        return open(local / url.rsplit("/", 1)[-1], "rb")

    written = fetch_multi30k(tmp_path / "m30k", splits=("val", "test_2016_flickr"), opener=opener)
    assert [p.name for p in written] == ["val.en.gz", "val.de.gz", "test_2016_flickr.en.gz", "test_2016_flickr.de.gz"]
    for path in written:
        assert path.read_bytes() == (local / path.name).read_bytes()
    assert len(read_lines(tmp_path / "m30k" / "val.de.gz")) == 1014
