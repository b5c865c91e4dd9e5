"""Choose where and how tensors live: device, dtype and CPU thread count.

>>> from rlhf_lab.device import choose_device, choose_dtype
>>> dev = choose_device()          # cuda when there is a GPU, else cpu
>>> choose_dtype(dev)              # bf16 on a GPU that supports it, fp32 otherwise
>>> cpu_has_native_bf16()          # True on CPUs with AVX512-BF16 or AMX (bf16 autocast pays off there)
"""

from __future__ import annotations

import os

import torch

_threads_configured = False


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """Return `device` as a torch.device, or CUDA when available and CPU otherwise."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """bf16 on a CUDA device that supports it, fp32 everywhere else (CPU bf16 is slow and lossy)."""
    if dtype is not None:
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def autocast_for(device: torch.device, mode: str = "auto"):
    """bf16 autocast on CUDA ("auto", when supported) or anywhere ("bf16"); a no-op context otherwise ("no")."""
    if mode == "bf16":
        enabled = True
    else:
        enabled = mode == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (x86 AVX512-BF16 or AMX-BF16), so bf16 autocast is fast.

    RLHF_LAB_CPU_BF16=1/0 wins. Otherwise read from /proc/cpuinfo (Linux); elsewhere False. Without
    these instructions PyTorch emulates bf16 matmuls and autocast is slower than fp32; with them a
    SmolLM2-135M PPO step took 21.6 s instead of 40 s on one core here (bench/cpu_budget.py).
    """
    env = os.environ.get("RLHF_LAB_CPU_BF16")
    if env is not None:
        return env.strip().lower() in ("1", "true", "yes", "on")
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_cpu_threads() -> int:
    """The thread count the lab uses on CPU.

    RLHF_LAB_THREADS wins. Otherwise one thread on a box with two cores or fewer: on a busy
    2-core machine two torch threads were 20-100x slower than one (measured on the lab's 2-core
    development machine; set RLHF_LAB_THREADS to measure yours), because the kernel, the UI and
    the data work compete for the same cores. Bigger machines get half their cores, at most 8
    (small models stop scaling beyond that).
    """
    env = os.environ.get("RLHF_LAB_THREADS")
    if env:
        return max(1, int(env))
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(8, cores // 2)


def configure_threads(device: torch.device, threads: int | None = None) -> int:
    """Set torch's intra-op thread count for CPU work; returns the count in force."""
    global _threads_configured
    if device.type != "cpu":
        return torch.get_num_threads()
    n = threads or default_cpu_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    _threads_configured = True
    return n
