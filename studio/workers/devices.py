"""Which devices get a worker: each CUDA GPU, or the CPU when there is none."""

from __future__ import annotations

import re

_DEVICE = re.compile(r"^(cpu|cuda:\d+)$")


def resolve_devices(spec: str) -> list[str]:
    """'auto' | 'cpu' | 'cuda:0,cuda:1' → device names, checked against what this machine has."""
    spec = spec.strip().lower()
    if spec == "auto":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
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
        import torch

        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        missing = [f"cuda:{i}" for i in cuda if i >= available]
        if missing:
            raise ValueError(f"--devices: {', '.join(missing)} not found; this machine has {available} CUDA device(s)")
    return devices
