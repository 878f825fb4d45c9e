"""Shared by the benchmark scripts: what machine a figure came from, reference and candidate
timed in alternation, and the result as JSON on stdout (and in ``--out`` if given).

Stage: benchmarks (docs/performance.md). Every script ends with ``emit(result, out)``, which
adds ``result["machine"]`` (:func:`machine`), so every printed figure names its CPU.
"""

from __future__ import annotations

import json
import os
import platform
import time

# /proc/cpuinfo flags that decide which kernels numpy, OpenCV and oneDNN run (bf16 needs
# avx512_bf16 or AMX for native speed; docs/performance.md, "Training").
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
NUMPY_SIMD = ("SSE42", "AVX2", "AVX512F", "AVX512_SPR", "NEON", "ASIMD", "SVE")


def _cpuinfo() -> tuple[str | None, set[str]]:
    """(model name, flags) from /proc/cpuinfo; (None, empty) where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, set()
    fields = [line.split(":", 1) for line in lines if ":" in line]
    model = next((v.strip() for k, v in fields if k.strip() == "model name"), None)
    flags = next((v.split() for k, v in fields if k.strip() in ("flags", "Features")), [])
    return model, set(flags)


def _numpy_simd() -> list[str]:
    """The SIMD extensions numpy dispatches to on this CPU (its private feature table)."""
    import numpy as np

    umath = getattr(getattr(np, "_core", None) or getattr(np, "core", None),
                    "_multiarray_umath", None)
    features = getattr(umath, "__cpu_features__", {})
    return [name for name in NUMPY_SIMD if features.get(name)]


def machine(device=None) -> dict:
    """What the figures ran on: CPU model, cores (all and usable), its capability and load.

    ``cpu_capability`` is torch's (the kernels ATen/oneDNN pick: DEFAULT, AVX2, AVX512, ...)
    when torch is importable, else numpy's best SIMD extension; ``cpu_flags`` always lists
    the relevant /proc/cpuinfo flags (avx512_bf16, amx_bf16: native bf16). ``device``: a
    torch device, whose name and GPU are added.
    """
    model, flags = _cpuinfo()
    simd = _numpy_simd()
    info = {"cpu_model": model or platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cpu_usable": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                           else os.cpu_count()),
            "cpu_capability": f"numpy {simd[-1]}" if simd else "unknown",
            "cpu_flags": [f for f in CPU_FLAGS if f in flags], "numpy_simd": simd,
            "load_average": ([round(x, 2) for x in os.getloadavg()]
                             if hasattr(os, "getloadavg") else None),
            "python": platform.python_version()}
    try:  # imported after the timing is done; fer3d_data's benchmarks need no torch
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        info.update(cpu_capability=torch.backends.cpu.get_cpu_capability(),
                    torch=torch.__version__, threads=torch.get_num_threads())
    if device is not None:
        info["device"] = str(device)
        if getattr(device, "type", None) == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def interleaved(fns, repeats: int) -> list[tuple[list[float], object]]:
    """Run the callables in turn, ``repeats`` rounds (ABAB...: reference and candidate see
    the same load); each one's seconds per round and its last output."""
    times, outs = [[] for _ in fns], [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            outs[i] = fn()
            times[i].append(time.perf_counter() - t)
    return list(zip(times, outs))


def emit(result: dict, out: str | None, device=None) -> dict:
    """Add ``machine`` (:func:`machine` of ``device``) to ``result``, print it as JSON,
    write it to ``out`` when given, and return it."""
    result = {**result, "machine": machine(device)}
    print(json.dumps(result, indent=1))
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    return result
