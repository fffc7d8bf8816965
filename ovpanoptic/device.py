"""Choosing the torch device, and what the device-aware speed defaults depend on (see
``configs/devices/`` and :mod:`ovpanoptic.config`)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from .errors import InputError

__all__ = ["BF16_CPU_FLAGS", "DEVICE_PROFILES", "DeviceInfo", "autocast", "cpu_flags", "describe_device", "resolve_device"]

log = logging.getLogger(__name__)


def resolve_device(spec: str = "auto") -> str:
    """Resolve ``"auto"`` to ``"cuda"``, then ``"mps"``, then ``"cpu"``; check explicit choices.

    torch is imported only when ``spec`` needs it; without torch, ``"auto"`` means ``"cpu"``.

    :raises InputError: an explicitly requested accelerator is not available.
    """
    spec = spec.strip().lower()
    if spec == "cpu":
        return "cpu"
    if importlib.util.find_spec("torch") is None:
        if spec == "auto":
            return "cpu"
        raise InputError(f"device {spec!r} needs PyTorch, which is not installed; use --device cpu")
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if spec == "auto":
        device = "cuda" if cuda else "mps" if mps else "cpu"
        log.info("device auto -> %s", device)
        return device
    if spec.startswith("cuda"):
        if not cuda:
            raise InputError(f"device {spec!r} requested but CUDA is not available here; use --device auto or cpu")
        if ":" in spec:
            index = int(spec.split(":", 1)[1])
            if index >= torch.cuda.device_count():
                raise InputError(
                    f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
                )
        return spec
    if spec == "mps":
        if not mps:
            raise InputError("device 'mps' requested but Apple MPS is not available here; use --device auto or cpu")
        return "mps"
    raise InputError(f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps")


#: CPU feature flags that mean native bfloat16 matrix instructions (``/proc/cpuinfo``: x86
#: ``flags``, Arm ``Features``). Without one of them torch emulates bf16 and it is slower than
#: float32 (15x for SAM 2's decoder on an AVX2-only EPYC), so the CPU profile stays in float32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (or the given text); empty where unreadable
    (macOS, Windows). Reads no torch."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
                cpuinfo = fh.read(65536)
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


#: The device profiles :attr:`DeviceInfo.profile` chooses from (``configs/devices/NAME.toml``).
DEVICE_PROFILES = ("cpu", "cpu-bf16", "cuda", "cuda-fp32", "mps")


@dataclass(frozen=True)
class DeviceInfo:
    """What the speed defaults depend on.

    :param device: the resolved torch device string.
    :param kind: ``cpu``, ``cuda`` or ``mps``.
    :param bf16: bfloat16 matrix products run natively (CPU flags in :data:`BF16_CPU_FLAGS`;
        CUDA compute capability 8.0 or newer).
    :param reason: why, in words (shown with ``-v`` and by ``ovpanoptic doctor``).
    """

    device: str
    kind: str
    bf16: bool
    reason: str

    @property
    def profile(self) -> str:
        """The shipped device profile for this device (``configs/devices/NAME.toml``)."""
        if self.kind == "cuda":
            return "cuda" if self.bf16 else "cuda-fp32"
        if self.kind == "mps":
            return "mps"
        return "cpu-bf16" if self.bf16 else "cpu"


def describe_device(device: str, cpuinfo: str | None = None) -> DeviceInfo:
    """:class:`DeviceInfo` of a resolved device string (imports torch only for ``cuda``).

    :param cpuinfo: ``/proc/cpuinfo`` text to read the CPU flags from (tests); default: this machine's.
    """
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        import torch

        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        name = torch.cuda.get_device_name(index)
        bf16 = major >= 8
        return DeviceInfo(device, kind, bf16, f"{name}, compute capability {major}.{minor}" + ("" if bf16 else " (no bf16 tensor cores)"))
    if kind == "mps":
        return DeviceInfo(device, kind, False, "Apple MPS (float32)")
    flags = cpu_flags(cpuinfo)
    found = [f for f in BF16_CPU_FLAGS if f in flags]
    if found:
        return DeviceInfo(device, "cpu", True, f"CPU with native bfloat16 ({', '.join(found)})")
    vector = [f for f in ("avx512f", "avx2", "asimd") if f in flags][:1]
    return DeviceInfo(
        device, "cpu", False, f"CPU without bfloat16 instructions ({vector[0] if vector else 'flags unknown'}): float32"
    )


def autocast(device: str, precision: str) -> Any:
    """A ``torch.autocast`` context to bfloat16 on ``device`` when ``precision`` is ``"bfloat16"``
    (CPU and CUDA), else one that changes nothing. Components use it around their model's forward
    pass; no global state is changed."""
    import torch

    kind = device.split(":", 1)[0]
    enabled = precision == "bfloat16" and kind in ("cpu", "cuda")
    # No cast cache: a forward pass uses each weight once, so caching bf16 copies of the weights
    # for the whole region would only hold half the model's size in memory again.
    return torch.autocast(
        kind if kind in ("cpu", "cuda") else "cpu", dtype=torch.bfloat16, enabled=enabled, cache_enabled=False
    )
