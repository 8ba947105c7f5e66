"""Which ONNX Runtime execution provider can really run here (no torch, no error spam).

``onnxruntime.get_available_providers()`` lists CUDA for every onnxruntime-gpu install, GPU or
not, and asking a GPU-less session for CUDA prints an error and a warning before it falls back.
So look first: an NVIDIA device node, a loadable driver library, and the CUDA libraries that
this onnxruntime build links against.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
from pathlib import Path

import onnxruntime as ort

from model.errors import ScorerError

log = logging.getLogger(__name__)

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"


def _loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def cuda_unavailable_reason() -> str | None:
    """None when the CUDA provider can run; otherwise why not, in a few words."""
    if CUDA_EP not in ort.get_available_providers():
        return "this onnxruntime package has no CUDA provider (install onnxruntime-gpu)"
    if not (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()):
        return "no NVIDIA GPU or driver on this machine"
    if not _loadable("libcuda.so.1"):
        return "the NVIDIA driver library libcuda.so.1 cannot be loaded"
    major = _cuda_major()
    # The CUDA/cuDNN wheels (e.g. torch's nvidia-* packages) are found by preload_dlls.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(Exception):
            ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    for lib in (f"libcudart.so.{major}", f"libcublasLt.so.{major}", "libcudnn.so.9"):
        if not _loadable(lib):
            return f"{lib} (CUDA {major} runtime for onnxruntime-gpu) cannot be loaded"
    return None


def _cuda_major() -> str:
    from onnxruntime.capi import build_and_package_info as info

    return str(getattr(info, "cuda_version", "12") or "12").split(".")[0]


def choose_providers(device: str) -> list[str]:
    """Providers to ask for: ``auto`` prefers CUDA when usable; ``cuda`` insists on it."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu":
        return [CPU_EP]
    reason = cuda_unavailable_reason()
    if reason is None:
        return [CUDA_EP, CPU_EP]
    if device == "cuda":
        raise ScorerError(f"device 'cuda' asked for, but {reason}; use device 'auto' or 'cpu'")
    log.info("scoring on CPU: %s", reason)
    return [CPU_EP]
