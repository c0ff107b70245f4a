"""Which devices get a worker: each CUDA GPU, or the CPU when there is none."""

from __future__ import annotations

import os
import re
import shutil
import sys

_DEVICE = re.compile(r"^(cpu|cuda:\d+)$")
# What a GPU driver leaves on a Linux machine, in a container with a GPU passed in, too: the NVIDIA kernel module's
# /proc entry and device files, Jetson's integrated GPU, WSL2's GPU device, and ROCm's (whose torch builds serve AMD
# GPUs as "cuda").
_LINUX_GPU_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/dxg",
                    "/dev/kfd")
# The NVIDIA tools installed with the driver; CUDA runs nvidia-modprobe to load a kernel module not loaded yet.
_NVIDIA_TOOLS = ("nvidia-smi", "nvidia-modprobe")


def resolve_devices(spec: str) -> list[str]:
    """'auto' | 'cpu' | 'cuda:0,cuda:1' → device names, checked against what this machine has."""
    spec = spec.strip().lower()
    if spec == "auto":
        return [f"cuda:{i}" for i in range(_cuda_count())] or ["cpu"]
    devices = [d.strip() for d in spec.split(",") if d.strip()]
    if not devices:
        raise ValueError("--devices is empty; use 'auto', 'cpu' or e.g. 'cuda:0,cuda:1'")
    for device in devices:
        if not _DEVICE.match(device):
            raise ValueError(f"--devices: unknown device {device!r}; use 'auto', 'cpu' or e.g. 'cuda:0'")
    if len(set(devices)) != len(devices):
        raise ValueError(f"--devices lists a device twice: {spec}")
    cuda = [int(d.split(":")[1]) for d in devices if d.startswith("cuda")]
    if cuda:
        available = _cuda_count()
        missing = [f"cuda:{i}" for i in cuda if i >= available]
        if missing:
            raise ValueError(f"--devices: {', '.join(missing)} not found; this machine has {available} CUDA device(s)")
    return devices


def _cuda_count() -> int:
    """CUDA devices torch can use. torch is imported only when a GPU driver may be present: the server needs torch
    for nothing else, and importing it takes seconds of a launch."""
    if not cuda_may_be_present():
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cuda_may_be_present() -> bool:
    """False only where torch certainly sees no CUDA device: macOS (no CUDA builds of torch), or Linux without any
    trace of a GPU driver. Elsewhere (Windows, say) only torch can tell."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return (any(os.path.exists(path) for path in _LINUX_GPU_PATHS)
                or any(shutil.which(tool) for tool in _NVIDIA_TOOLS))
    return True
