"""Facts about the environment a number was measured in: library versions, CPU model, ISA class, cores.

One place for them, so the tune report, the benchmark, the regression manifest and the profile name the
machine the same way. Reads /proc and package metadata only; imports nothing heavy.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = [
    "ISA_CLASSES",
    "ISA_FLAGS",
    "available_cores",
    "cpu_flags",
    "cpu_model",
    "isa_class",
    "library_versions",
    "machine_info",
]

#: CPU feature classes whose INT8 kernels differ (best first). oneDNN picks its INT8 GEMM by these features,
#: and the kernels round and saturate differently (AVX2's vpmaddubsw saturates pairwise int16 sums; VNNI
#: accumulates in int32), so INT8 outputs, and BLEU, can differ between classes while FP32 does not.
ISA_CLASSES = ("amx_int8", "avx512_vnni", "avx512f", "avx2", "baseline")
#: the flags reported with every measurement
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")

_LIBRARIES = ("tensorflow", "intel-extension-for-tensorflow", "neural-compressor", "sacrebleu")


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    return frozenset((_cpuinfo_field("flags") or "").split())


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` where /proc/cpuinfo has none)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def isa_class(flags: set[str] | frozenset[str] | None = None) -> str:
    """The best of :data:`ISA_CLASSES` this CPU has (from /proc/cpuinfo unless ``flags`` are given)."""
    flags = cpu_flags() if flags is None else flags
    return next((c for c in ISA_CLASSES[:-1] if c in flags), "baseline")


def available_cores() -> list[int]:
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def library_versions() -> dict[str, str]:
    """Versions of this package, Python and the libraries that decide the numbers."""
    from inc_transformer_mt import __version__

    out = {"inc_transformer_mt": __version__, "python": platform.python_version()}
    for pkg in _LIBRARIES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def machine_info() -> dict[str, str | int | float | bool]:
    """What a number was measured on: CPU model, vendor, ISA class and flags, cores, memory, libraries."""
    flags = cpu_flags()
    info: dict[str, str | int | float | bool] = {
        "platform": platform.platform(), "cpu_model": cpu_model(), "cpu_vendor": _cpuinfo_field("vendor_id") or "",
        "isa_class": isa_class(flags), "cpus": os.cpu_count() or 0, "cores_usable": len(available_cores())}
    info.update({f: f in flags for f in ISA_FLAGS})
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory_gib"] = round(int(mem[1]) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    info.update(library_versions())
    return info
