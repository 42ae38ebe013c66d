"""The reliability case table: every bad input and fault in ``tests/reliability_cases.yaml``, run as data.

Each case sets up files in an empty directory (the working directory of the command), runs one ``inc-mt``
command in this process (or, with ``process: true``, in a real child process), and checks what a user would:

- the exit code (0 ok, 1 a failed check, 2 bad input, 3 a runtime failure, 130/143 interrupted);
- stderr: no Python traceback ever; with ``error:`` words, exactly one ``error:`` line holding every word
  (case-insensitive); without, no ``error:`` line at all;
- the files that must exist, must not exist, must be unchanged (byte for byte, a symlink still a symlink);
- nothing half-written: no temporary or staging file is left anywhere under the directory.

Setup steps (``setup``, in order) and faults (``fault``) are the small vocabulary below; ``{tiny}``,
``{tuned}`` and ``{data}`` in any string are the tiny model, a tuned copy of it and the Multi30k directory.
A case marked ``was: defect`` reproduces a defect issue 14 reported on main f5b8aef; the others were added
as its neighbours. Regress cases with ``failed`` read ``--json`` output: exactly those checks failed.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import importlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CLI_WITH_CTRL_C

from inc_transformer_mt.cli.main import main

HERE = Path(__file__).resolve().parent
TABLE = HERE / "reliability_cases.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(TABLE.read_text(encoding="utf-8"))

pytestmark = pytest.mark.tf

#: what a case may say; anything else is a typo in the table, caught by test_the_table_is_well_formed
CASE_KEYS = {"id", "was", "why", "setup", "argv", "stdin", "stdout", "fault", "process", "signal", "exit", "error",
             "lacks_error", "out", "exist", "absent", "unchanged", "symlink", "contains", "lacks", "lines", "failed"}
STEP_KINDS = {"write", "copy_model", "copy_tuned", "json", "fifo", "chardev", "symlink", "mkdir", "gzip_bomb",
              "flip_byte", "truncate", "manifest", "recipe", "lock"}
#: the recipe every ``recipe`` step starts from (tiny model, a few Multi30k val sentences, one quick trial);
#: its ``set`` replaces dotted keys
BASE_RECIPE = {
    "model": {"path": "{tiny}"},
    "data": {"data_dir": "{data}", "calibration": {"split": "val", "start": 100, "size": 8},
             "tuning": {"split": "val", "start": 0, "size": 16}},
    "calibration": {"method": "minmax", "batch_size": 4},
    "tuning": {"fallback": "none", "max_trials": 1, "criterion": {"type": "absolute", "max_drop": 10.0}},
    "backend": "itex",
    "passes": [],
    "outputs": {"dir": "tuned", "overwrite": "never"},
}
#: files a writer leaves only while it runs: atomic_write's temp files, tune's staging and swap directories
LEFTOVER = re.compile(r"^\..*(\.tmp|\.staging-.*|\.old-\d+)$")


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def places(tiny_model_dir, tuned_tiny_result, tmp_path_factory) -> Iterator[dict[str, str]]:
    from inc_transformer_mt.data.corpus import multi30k_dir

    cache = tmp_path_factory.mktemp("reliability_cache")
    previous = os.environ.get("INC_MT_CACHE")
    os.environ["INC_MT_CACHE"] = str(cache)  # the tune cases' FP32 baselines, apart from other tests'
    yield {"tiny": str(tiny_model_dir), "tuned": str(tuned_tiny_result.out_dir), "data": str(multi30k_dir())}
    if previous is None:
        os.environ.pop("INC_MT_CACHE", None)
    else:
        os.environ["INC_MT_CACHE"] = previous


def _fill(value: Any, places: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, path in places.items():
            value = value.replace("{" + key + "}", path)
        return value
    if isinstance(value, list):
        return [_fill(v, places) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, places) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------------ setup
def _set_key(data: Any, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data[int(key)] if isinstance(data, list) else data.setdefault(key, {})
    if value == "<delete>":
        del data[keys[-1]]
    elif isinstance(data, list):
        data[int(keys[-1])] = value
    else:
        data[keys[-1]] = value


def _step(step: dict[str, Any], root: Path, places: dict[str, str], held: list) -> None:
    (kind, target), = [(k, v) for k, v in step.items() if k in STEP_KINDS]
    path = root / target
    if kind == "write":
        path.parent.mkdir(parents=True, exist_ok=True)
        text = step.get("text", "") * int(step.get("repeat", 1))
        path.write_bytes(bytes.fromhex(step["hex"]) if "hex" in step else text.encode("utf-8"))
    elif kind == "copy_model":
        shutil.copytree(places["tiny"], path)
    elif kind == "copy_tuned":  # the manifest names its FP32 model and data relative to itself: make them absolute
        shutil.copytree(places["tuned"], path)
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["model"]["fp32_model"] = str(Path(places["tuned"], manifest["model"]["fp32_model"]).resolve())
        for evaluation in manifest["evaluations"]:
            for key in ("source", "reference"):
                if evaluation["data"].get(key):
                    evaluation["data"][key] = str(Path(places["tuned"], evaluation["data"][key]).resolve())
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    elif kind in ("json", "manifest"):
        data = json.loads(path.read_text())
        for dotted, value in step["set"].items():
            _set_key(data, dotted, value)
        path.write_text(json.dumps(data))  # NaN/Infinity come out as JSON's extension, as a hand edit would
    elif kind == "fifo":  # with read_into, a reader copies what arrives into that file (a pipe's other end)
        os.mkfifo(path)
        if step.get("read_into"):
            copy = root / step["read_into"]
            reader = threading.Thread(target=lambda: copy.write_bytes(path.read_bytes()), daemon=True)
            reader.start()
            held.append(_FifoReader(path, reader))
    elif kind == "chardev":  # a null device made here, never the system's /dev/null
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
    elif kind == "symlink":
        os.symlink(step["to"], path)
    elif kind == "mkdir":
        path.mkdir(parents=True)
    elif kind == "gzip_bomb":  # megabytes of zeros, gzip-compressed about 1000:1
        with gzip.open(path, "wb", compresslevel=1) as fh:
            block = bytes(1 << 20)
            for _ in range(int(step["mb"])):
                fh.write(block)
    elif kind == "flip_byte":
        data = bytearray(path.read_bytes())
        data[int(step["at"])] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(step["to"])])
    elif kind == "recipe":
        recipe = _fill(json.loads(json.dumps(BASE_RECIPE)), places)
        for dotted, value in (step.get("set") or {}).items():
            _set_key(recipe, dotted, value)
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    elif kind == "lock":  # another tune holds the output directory's lock while the command runs
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.parent / f".{path.name}.lock", "a+")  # noqa: SIM115 - closed after the run
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(fh)


class _FifoReader:
    """The reading end of a FIFO; ``close`` ends it even when the command never opened the FIFO."""

    def __init__(self, path: Path, thread: threading.Thread):
        self.path, self.thread = path, thread

    def close(self) -> None:
        if self.thread.is_alive():
            try:  # a reader still waiting in open(): give it a writer that writes nothing
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        self.thread.join(timeout=30)


def _snapshot(root: Path, names: list[str]) -> dict[str, tuple[bool, int, bytes | None]]:
    """(a symlink?, file type, bytes of a regular file) of each path."""
    out = {}
    for name in names:
        p = root / name
        out[name] = (p.is_symlink(), stat.S_IFMT(os.stat(p).st_mode), p.read_bytes() if p.is_file() else None)
    return out


# ----------------------------------------------------------------------------------------------- faults
def _inject(fault: dict[str, Any], monkeypatch) -> None:
    """``{call: os.replace|os.fdopen-write, errno: ENOSPC, path: fragment}``: that call fails like the OS would
    when its path contains ``path``."""
    call = fault["call"]
    code = getattr(errno, fault.get("errno", "EIO"))
    fragment = fault.get("path", "")
    if call == "os.replace":
        real = os.replace

        def failing_replace(src, dst, *a, **k):
            if fragment in str(dst):
                raise OSError(code, os.strerror(code), str(dst))
            return real(src, dst, *a, **k)

        monkeypatch.setattr(os, "replace", failing_replace)
    elif call == "os.mkdir":
        real_mkdir = os.mkdir

        def failing_mkdir(p, *a, **k):
            if fragment in str(p):
                raise OSError(code, os.strerror(code), str(p))
            return real_mkdir(p, *a, **k)

        monkeypatch.setattr(os, "mkdir", failing_mkdir)
    elif call == "KeyboardInterrupt":  # Ctrl-C while the named function (module.[Class.]name) runs
        parts = fault["at"].split(".")
        for cut in range(len(parts) - 1, 0, -1):
            try:
                owner = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:-1]:
                owner = getattr(owner, attr)
            break

        def interrupted(*a, **k):
            raise KeyboardInterrupt

        monkeypatch.setattr(owner, parts[-1], interrupted)
    else:
        raise AssertionError(f"unknown fault {call}")


# -------------------------------------------------------------------------------------------------- run
def _run_in_process(case, argv, root, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.chdir(root)
    stdin = case.get("stdin")
    if stdin == "<closed>":
        monkeypatch.setattr(sys, "stdin", None)
    elif stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8"))
    full = None
    if case.get("stdout") == "<closed>":
        monkeypatch.setattr(sys, "stdout", None)
    elif case.get("stdout") == "<full>":
        full = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115 - closed below
        monkeypatch.setattr(sys, "stdout", full)
    if case.get("fault"):
        _inject(case["fault"], monkeypatch)
    try:
        try:
            code = main(argv)
        except SystemExit as exc:  # only argparse's --help/--version may exit; its errors are caught in main
            code = exc.code if isinstance(exc.code, int) else 2
    finally:
        monkeypatch.undo()
        if full is not None:
            try:
                full.close()
            except OSError:
                pass
    out, err = capsys.readouterr()
    return code, out, err


def _run_process(case, argv, root) -> tuple[int, str, str]:
    redirect = {"<closed>": " >&-", "<full>": " >/dev/full"}.get(case.get("stdout"), "")
    redirect += " <&-" if case.get("stdin") == "<closed>" else ""
    quoted = " ".join(shlex_quote(a) for a in argv)
    sig = case.get("signal")
    # a signalled command starts with Ctrl-C's default action, whatever the suite inherited
    module = " ".join(map(shlex_quote, CLI_WITH_CTRL_C)) if sig else "-m inc_transformer_mt.cli.main"
    cmd = f"exec {shlex_quote(sys.executable)} {module} {quoted}{redirect}"
    stdin = case.get("stdin") if case.get("stdin") not in (None, "<closed>") else None
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if sig is None:
        proc = subprocess.run(["bash", "-c", cmd], cwd=root, input=stdin, capture_output=True,
                              text=True, timeout=120, check=False, env=env)
        return proc.returncode, proc.stdout or "", proc.stderr
    # a signal once the command has started its work (its workers are up after ``after`` seconds)
    with subprocess.Popen(["bash", "-c", cmd], cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            out, err = proc.communicate(timeout=float(sig["after"]))
        except subprocess.TimeoutExpired:
            proc.send_signal(getattr(signal, sig["name"]))
            out, err = proc.communicate(timeout=60)
        return proc.returncode, out, err


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


# ------------------------------------------------------------------------------------------------ tests
def test_the_table_is_well_formed():
    """Every case says only what the harness checks, and the table covers at least the 100 cases of issue 14."""
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(CASES) >= 100
    for case in CASES:
        assert set(case) <= CASE_KEYS, (case["id"], set(case) - CASE_KEYS)
        assert case.get("was") in (None, "defect"), case["id"]
        assert isinstance(case["exit"], int) and isinstance(case["argv"], list), case["id"]
        killed = case["exit"] < 0  # killed by a signal (-9): nothing can be printed
        assert case["exit"] in (0, 1) or killed or case.get("error"), f"{case['id']}: say the error words"
        for step in case.get("setup", []):
            assert len(set(step) & STEP_KINDS) == 1, (case["id"], step)
    # the count the docs publish is the table's
    for doc in (HERE.parent / "README.md", HERE.parent / "docs" / "design.md"):
        assert re.search(rf"\b{len(CASES)} (bad inputs|cases)", doc.read_text(encoding="utf-8")), doc


def is_long(case: dict[str, Any]) -> bool:
    """A row that starts a child process or runs a whole tune or regress (seconds each): run from
    tests/test_reliability_long.py, so that the two xdist workers share the table."""
    return bool(case.get("process")) or (case["argv"][:1] in (["tune"], ["regress"]) and case["exit"] != 2)


SHORT = [c for c in CASES if not is_long(c)]


@pytest.mark.parametrize("case", SHORT, ids=[c["id"] for c in SHORT])
def test_case(case, places, tmp_path, monkeypatch, capsys):
    run_case(case, places, tmp_path, monkeypatch, capsys)


def run_case(case, places, tmp_path, monkeypatch, capsys) -> None:
    """Set up, run and check one row of the table (see the module docstring)."""
    case = _fill(case, places)
    root = tmp_path / "work"
    root.mkdir()
    held: list = []
    for step in case.get("setup", []):
        _step(step, root, places, held)
    before = _snapshot(root, case.get("unchanged", []))
    argv = [str(a) for a in case["argv"]]
    try:
        if case.get("process"):
            code, out, err = _run_process(case, argv, root)
        else:
            code, out, err = _run_in_process(case, argv, root, monkeypatch, capsys)
    finally:
        for fh in held:
            fh.close()

    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == case["exit"], f"exit {code}, wanted {case['exit']}; stderr: {err[-2000:]}"
    if case.get("error"):
        assert len(errors) == 1, err[-2000:]
        for word in case["error"]:
            assert str(word).lower() in errors[0].lower(), (word, errors[0])
        for word in case.get("lacks_error", []):
            assert str(word).lower() not in errors[0].lower(), (word, errors[0])
    else:
        assert errors == [], err[-2000:]
    if case.get("failed"):  # regress --json: these checks (and no others) failed
        checks = json.loads(out)["checks"]
        assert {c["name"] for c in checks if c["status"] == "fail"} == set(case["failed"]), checks
    for word in case.get("out", []):
        assert word in out, (word, out[-2000:])
    for name in case.get("exist", []):
        assert (root / name).exists(), f"{name} should exist"
    for name in case.get("absent", []):
        assert not (root / name).exists() and not (root / name).is_symlink(), f"{name} should not exist"
    assert _snapshot(root, case.get("unchanged", [])) == before, "a file that must be kept was changed"
    for name in case.get("symlink", []):
        assert (root / name).is_symlink(), f"{name} should still be a symlink"
    for name, words in (case.get("contains") or {}).items():
        text = (root / name).read_text(encoding="utf-8")
        for word in words if isinstance(words, list) else [words]:
            assert word in text, (name, word, text[-1000:])
    for name, words in (case.get("lacks") or {}).items():
        text = (root / name).read_text(encoding="utf-8")
        for word in words:
            assert word not in text, (name, word, text[-1000:])
    for name, count in (case.get("lines") or {}).items():
        assert len((root / name).read_text(encoding="utf-8").splitlines()) == count, name
    leftovers = [str(p.relative_to(root)) for p in root.rglob(".*") if LEFTOVER.match(p.name)]
    assert leftovers == [], f"half-written files left behind: {leftovers}"
