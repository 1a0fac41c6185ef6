"""What this machine runs natively: CPU feature flags and the precision a benchmark should pick.

Kept free of TensorFlow imports so that drivers (benchmarks, launchers) can decide before starting a trainer.
"""

from __future__ import annotations

import shutil
from typing import Optional


# CPU instruction sets (Linux /proc/cpuinfo flag names) that run each reduced precision natively.
NATIVE_CPU_FLAGS = {"bf16": ("amx_bf16", "avx512_bf16"), "fp16": ("amx_fp16", "avx512_fp16")}


def cpu_flags() -> Optional[set[str]]:
    """The CPU's feature flags from /proc/cpuinfo, or None where that file does not exist (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


def precision_warning(precision: str, have_gpu: bool, flags: Optional[set[str]]) -> Optional[str]:
    """The one line printed for ``--precision bf16|fp16`` without a GPU (None for fp32 or with a GPU).

    Mixed precision is meant for GPUs. A CPU without the matching instructions emulates the 16-bit math and runs
    slower than fp32; one with them (AMX / AVX512_BF16 / AVX512_FP16) can run faster (measured on a Xeon with
    AMX: bf16 1.5-2x fp32, bench/trainer_bench.py), so the line says which case this machine is.
    """
    if precision == "fp32" or have_gpu:
        return None
    native = NATIVE_CPU_FLAGS[precision]
    head = f"warning: --precision {precision} without a GPU"
    if flags is None:
        return (f"{head}: slow unless this CPU has {'/'.join(native)} instructions (otherwise TensorFlow "
                "emulates them and runs slower than fp32)")
    have = [f for f in native if f in flags]
    if not have:
        return (f"{head} is slow: this CPU has no {'/'.join(native)} instructions, so TensorFlow emulates "
                f"{precision} and runs slower than fp32")
    return (f"{head}: this CPU has {'/'.join(have)} and runs it natively (often faster than fp32 here); "
            "CPUs without those instructions run it slower than fp32")


def auto_precision(have_gpu: Optional[bool] = None, flags: Optional[set[str]] = None) -> str:
    """``bf16`` on a GPU or on a CPU that runs bf16 natively, else ``fp32`` (emulated bf16 is slower than fp32).

    ``have_gpu`` defaults to whether ``nvidia-smi`` is on PATH and ``flags`` to this CPU's flags.
    """
    if have_gpu is None:
        have_gpu = shutil.which("nvidia-smi") is not None
    if have_gpu:
        return "bf16"
    if flags is None:
        flags = cpu_flags() or set()
    return "bf16" if flags & set(NATIVE_CPU_FLAGS["bf16"]) else "fp32"
