"""Writing a tune's results: everything goes into a staging directory beside the output, which is moved into
place in one rename at the end, so a failed or interrupted tune never leaves a half-written directory."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.data.tokenizer import copy_tokenizer
from inc_transformer_mt.env import isa_class
from inc_transformer_mt.errors import UserError
from inc_transformer_mt.model.graph import ResolvedModel
from inc_transformer_mt.recipe import Recipe, dump_recipe
from inc_transformer_mt.report.manifest import manifest_from_report, write_manifest
from inc_transformer_mt.report.tune_report import TuneReport, load_report, render_markdown

__all__ = ["GRAPH_NAME", "check_output_dir", "failed_report_dir", "output_lock", "publish", "publish_dir"]

GRAPH_NAME = "model.pb.gz"
#: what follows ``.<name>`` in the name of a staging or swap directory (``.tuned.staging-123-x1y2``, ``.tuned.old-123``)
STALE = re.compile(r"^\.(staging-\d+-\w+|staging-\w+|old-\d+)$")
logger = logging.getLogger(__name__)


def _written_by_us(out: Path) -> TuneReport | None:
    """The tune report of a directory this package wrote (None when there is no valid report.json)."""
    if not (out / "report.json").is_file():
        return None
    try:
        return load_report(out / "report.json")
    except UserError:
        return None


def check_output_dir(out: Path, policy: str, protected: Path | None = None) -> None:
    """Refuse (exit 2) before any work when the output directory cannot be written under the policy.

    ``replace`` only ever replaces a directory this package wrote (it holds a valid report.json), never a
    directory of other files, and never one that holds ``protected`` (the FP32 model being tuned).
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"outputs.dir: {out} exists and is not a directory")
    if protected is not None:
        model, target = protected.resolve(), out.resolve()
        if model == target or target in model.parents:
            raise UserError(f"outputs.dir: {out} holds the FP32 model being tuned ({protected}); choose another "
                            "directory")
    if out.is_dir() and any(out.iterdir()):
        if policy == "never":
            raise UserError(f"outputs.dir: {out} is not empty and outputs.overwrite is 'never' "
                            "(use --set outputs.overwrite=replace to replace it)")
        if _written_by_us(out) is None:
            raise UserError(f"outputs.dir: {out} holds files this package did not write (no valid report.json); "
                            "outputs.overwrite 'replace' only replaces a previous tune's output")
    parent = _make_parent(out)
    if not os.access(parent, os.W_OK):
        raise UserError(f"outputs.dir: {parent} is not writable")


def _make_parent(out: Path) -> Path:
    """``out``'s parent directory, created when missing (a UserError naming outputs.dir when it cannot be)."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"outputs.dir: cannot create {parent} ({exc.strerror})") from None
    return parent


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``out`` for the whole tune: a second tune on the same directory fails at once
    (exit 2) instead of racing it to the final rename. Staging directories a killed tune left are removed
    under the lock (no live tune can own them then). The lock file is removed on the way out."""
    parent = _make_parent(out)
    path = parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise UserError(f"outputs.dir: cannot write in {parent} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"outputs.dir: {out} is being written by another tune (it holds {path}); wait for it "
                            "or choose another directory") from None
        try:  # the holder before us may have removed the file between our open and our lock: lock the new one
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        _remove_stale(out)
        yield
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


def _remove_stale(out: Path) -> None:
    """Staging and swap directories of ``out`` (and of its ``.failed`` report) that a killed tune left behind."""
    for target in (out, failed_report_dir(out)):
        for entry in target.parent.glob(f".{glob.escape(target.name)}.*"):
            if STALE.match(entry.name[len(target.name) + 1:]) and entry.is_dir() and not entry.is_symlink():
                logger.info("removing %s, left by a tune that was killed", entry)
                shutil.rmtree(entry, ignore_errors=True)


def failed_report_dir(out: Path) -> Path:
    """Where a failing tune writes its report when ``out`` holds a passing model it must not replace."""
    return out.with_name(out.name + ".failed")


def publish_dir(staging: Path, out: Path, policy: str) -> None:
    """Move a finished staging directory to ``out`` (swapping out an old one under 'replace')."""
    if out.exists() and any(out.iterdir()):
        if policy == "never" or _written_by_us(out) is None:
            raise UserError(f"outputs.dir: {out} was filled by something else while tuning; nothing was written "
                            "(run again with another outputs.dir)")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.exists():
            out.rmdir()
        os.replace(staging, out)


def _model_json(model: ResolvedModel, recipe: Recipe, source_sha256: str, passes: list[str],
                tokenizer: str | None) -> str:
    meta: dict[str, Any] = model.meta.to_dict()
    meta["tokenizer"] = tokenizer
    meta["model"] = {**(meta.get("model") or {}), "graph": GRAPH_NAME, "quantized": "int8", "backend": recipe.backend,
                     "source_sha256": source_sha256, "passes": passes, "runtime": recipe.runtime.model_dump()}
    return json.dumps(meta, indent=2) + "\n"


def _write_model(staging: Path, out_dir: Path, report: TuneReport, graph_def, model: ResolvedModel, recipe: Recipe,
                 recipe_path: Path) -> TuneReport:
    """The INT8 graph, its model.json, tokenizer and manifest; returns the report with the graph's path."""
    atomic_write(staging / GRAPH_NAME, graph_def.SerializeToString(deterministic=True), gzip_level=6)
    applied = list(recipe.passes) if report.passes is not None and report.passes.accepted else []
    tokenizer = copy_tokenizer(model.tokenizer_path, staging) if model.tokenizer_path else None
    atomic_write(staging / "model.json", _model_json(model, recipe, report.model.sha256, applied, tokenizer))
    report = report.model_copy(update={"int8": report.int8.model_copy(update={"graph": str(out_dir / GRAPH_NAME)})})
    manifest = manifest_from_report(report, out_dir=out_dir, graph=staging / GRAPH_NAME, fp32_graph=model.graph_path,
                                    recipe=recipe_path, src_lang=recipe.data.src_lang, tgt_lang=recipe.data.tgt_lang,
                                    isa=isa_class())
    write_manifest(manifest, staging / "manifest.json")
    return report


def publish(report: TuneReport, graph_def, model: ResolvedModel, recipe: Recipe,
            recipe_path: Path) -> tuple[TuneReport, Path]:
    """Stage 9: report (and, for a passing tune, the model) into ``recipe.outputs.dir`` atomically.

    A failing tune never replaces a passing model: when the output directory holds one, the report goes to
    ``<dir>.failed`` beside it. Returns the report as written and the directory it is in.
    """
    out_dir = Path(recipe.outputs.dir)
    previous = _written_by_us(out_dir) if out_dir.is_dir() else None
    if not report.passed and previous is not None and previous.passed:
        out_dir = failed_report_dir(out_dir)
        check_output_dir(out_dir, recipe.outputs.overwrite)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-{os.getpid()}-", dir=out_dir.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staging, 0o777 & ~mask)  # mkdtemp makes 0700 directories
    try:
        if report.passed:
            report = _write_model(staging, out_dir, report, graph_def, model, recipe, recipe_path)
        atomic_write(staging / "recipe.resolved.yaml", dump_recipe(recipe))
        atomic_write(staging / "report.json", report.to_json())
        atomic_write(staging / "report.md", render_markdown(report))
        publish_dir(staging, out_dir, recipe.outputs.overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report, out_dir
