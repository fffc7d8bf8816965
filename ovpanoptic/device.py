"""Choosing the torch device."""

from __future__ import annotations

import importlib.util
import logging

from .errors import InputError

__all__ = ["resolve_device"]

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
