"""``ovpanoptic doctor``: the environment in one report, for users and bug reports.

Each line is a :class:`Check`: what was looked at, what was found, whether it is fine, and the fix
when it is not. ``required`` checks (the packages the default preset needs, working plugins) make
the command exit 1 when they fail; the others (the demo's packages, an accelerator, cached weights)
are information.

May import the core modules; imports torch only to report the device and the CPU's instruction set.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One line of the report.

    :param topic: what was looked at (``"package torch"``, ``"device"``, ...).
    :param found: what was found (a version, a path, a size).
    :param ok: whether it is fine.
    :param required: whether a failure makes ``doctor`` exit 1.
    :param fix: what to do when it is not fine.
    """

    topic: str
    found: str
    ok: bool = True
    required: bool = False
    fix: str = ""


#: (distribution, import name, required, what needs it)
PACKAGES: tuple[tuple[str, str, bool, str], ...] = (
    ("numpy", "numpy", True, "everything"),
    ("pillow", "PIL", True, "reading images"),
    ("pluggy", "pluggy", True, "plugins"),
    ("torch", "torch", True, "the models (sam2, clip) and the fusers"),
    ("torchvision", "torchvision", True, "sam2"),
    ("sam2", "sam2", True, "the sam2 proposal generators"),
    ("open-clip-torch", "open_clip", True, "the clip classifier"),
    ("sal-detectron2", "detectron2", True, "the detectron2 fuser and the overlay exporter"),
    ("pycocotools", "pycocotools", True, "the coco-instances exporter"),
    ("huggingface-hub", "huggingface_hub", True, "downloading weights"),
    ("gradio", "gradio", False, "the demo (ovpanoptic demo)"),
    ("av", "av", False, "video files and overlay videos (segment-video)"),
    ("scipy", "scipy", False, "id matching between keyframes (segment-video)"),
    ("label-studio-sdk", "label_studio_sdk", False, "Label Studio exports, ML backend and reader (brush RLE)"),
    ("datumaro", "datumaro", False, "reading CVAT exports (eval)"),
    ("cityscapesScripts", "cityscapesscripts", False, "Cityscapes exporters and readers"),
)

_FIX_PACKAGES = "run scripts/bootstrap.sh (it installs the pinned versions), or pip install"


def _version(dist: str, module: str) -> str | None:
    for name in (dist, module):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "(installed, version unknown)" if importlib.util.find_spec(module) is not None else None


def package_checks() -> list[Check]:
    """Python and the packages ovpanoptic uses, with their versions."""
    checks = [
        Check(
            "python",
            f"{platform.python_version()} ({sys.executable})",
            ok=sys.version_info >= (3, 10),
            required=True,
            fix="" if sys.version_info >= (3, 10) else "use Python 3.10 or newer (3.11 recommended)",
        ),
        Check("ovpanoptic", _version("ovpanoptic", "ovpanoptic") or "(not installed as a distribution)"),
    ]
    for dist, module, required, purpose in PACKAGES:
        version = _version(dist, module)
        found = importlib.util.find_spec(module) is not None
        checks.append(
            Check(
                f"package {module}",
                f"{version} (for {purpose})" if found else f"missing (needed for {purpose})",
                ok=found,
                required=required,
                fix="" if found else f"{_FIX_PACKAGES} {dist}",
            )
        )
    return checks


def device_checks() -> list[Check]:
    """The device ``auto`` resolves to, accelerators, and the CPU's vector instructions."""
    from .device import BF16_CPU_FLAGS, cpu_flags, describe_device, resolve_device

    checks: list[Check] = []
    if importlib.util.find_spec("torch") is None:
        return [Check("device", "cpu (torch is not installed)")]
    import torch

    checks.append(Check("device auto", resolve_device("auto")))
    cuda = torch.cuda.is_available()
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    checks.append(Check("cuda", f"{len(names)} device(s): {', '.join(names)}" if cuda else f"not available (torch {torch.__version__})"))
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    checks.append(Check("mps", "available" if mps else "not available"))
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "unknown"
    flags = cpu_flags()
    vector = [f for f in ("avx2", "avx512f", *BF16_CPU_FLAGS, "amx_tile") if f in flags]
    cpu = describe_device("cpu")
    checks.append(
        Check(
            "cpu",
            f"{os.cpu_count()} cores, torch kernels: {capability}, flags: {', '.join(vector) or 'none of avx2/avx512/amx'}; "
            f"bfloat16 {'is fast here' if cpu.bf16 else 'is slow here (no native bf16): keep float32'}",
        )
    )
    from .config import list_device_profiles

    auto = describe_device(resolve_device("auto"))
    source = list_device_profiles().get(auto.profile, f"(missing: no {auto.profile}.toml in any devices/ folder)")
    checks.append(Check("device profile", f"auto -> {auto.profile} ({auto.reason}): {source}"))
    return checks


def _folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def cache_checks() -> list[Check]:
    """Offline mode, the weights in the Hugging Face cache, and ovpanoptic's own cache."""
    from .pipeline import default_cache_dir
    from .weights import hub_cache_dir, is_offline

    checks = [
        Check(
            "offline mode",
            "on (HF_HUB_OFFLINE=1): weights come from the cache only" if is_offline() else "off: missing weights are downloaded on first use",
        )
    ]
    hub = Path(hub_cache_dir())
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(hub) if hub.is_dir() else None
    except Exception as exc:  # noqa: BLE001 - a broken cache is reported, not fatal
        checks.append(Check("weights cache", f"{hub}: cannot be read ({exc})", ok=False, fix="check the folder's permissions"))
        info = None
    if info is not None:
        for repo in sorted(info.repos, key=lambda r: r.repo_id):
            files = sorted({f.file_name for rev in repo.revisions for f in rev.files})
            checks.append(Check(f"weights {repo.repo_id}", f"{', '.join(files)} ({_mb(repo.size_on_disk)}) in {repo.repo_path}"))
    if info is None or not info.repos:
        checks.append(
            Check(
                "weights cache",
                f"no model weights in {hub}",
                ok=False,
                fix="ovpanoptic download sam2 --size tiny && ovpanoptic download clip (where the hub is reachable)",
            )
        )
    if hub.exists() and not hub.is_dir():
        checks.append(Check("weights cache folder", f"{hub} is a file", ok=False, required=True, fix="point HF_HUB_CACHE / HF_HOME at a folder"))
    if is_offline() and (info is None or not info.repos):
        checks.append(
            Check(
                "default preset offline",
                "offline mode is on and no weights are cached: the default preset (sam2 + clip) cannot segment",
                ok=False,
                required=True,
                fix="ovpanoptic download sam2 --size tiny && ovpanoptic download clip (where the hub is reachable), or HF_HUB_OFFLINE=0",
            )
        )
    cache = default_cache_dir()
    if cache.exists() and not cache.is_dir():
        checks.append(Check("ovpanoptic cache", f"{cache} is a file", ok=False, required=True, fix="point OVPANOPTIC_CACHE_DIR at a folder"))
    else:
        size = _folder_size(cache) if cache.is_dir() else 0
        checks.append(Check("ovpanoptic cache", f"{cache} ({_mb(size)}; text embeddings)" if cache.is_dir() else f"{cache} (empty)"))
    return checks


def plugin_checks(disable: Iterable[str] = ()) -> list[Check]:
    """Every plugin: where it comes from, and whether it loads and registers."""
    from .errors import OvpanopticError
    from .plugins import Registry

    try:
        registry = Registry.create(disable, strict=False)
    except OvpanopticError as exc:
        return [Check("plugins", "cannot be loaded", ok=False, required=True, fix=str(exc))]
    checks = []
    for info in registry.plugins():
        origin = "built-in" if info.builtin else f"{info.distribution} {info.version}".strip()
        if info.blocked:
            checks.append(Check(f"plugin {info.name}", f"{origin}, disabled"))
        elif info.problem:
            checks.append(Check(f"plugin {info.name}", origin, ok=False, required=True, fix=info.problem))
        else:
            provides = ", ".join(info.components[:4]) + (f" and {len(info.components) - 4} more" if len(info.components) > 4 else "")
            checks.append(Check(f"plugin {info.name}", f"{origin}; provides {provides or 'nothing'}"))
    return checks


def run_checks(disable: Iterable[str] = ()) -> list[Check]:
    """Every check, in report order."""
    return [*package_checks(), *device_checks(), *cache_checks(), *plugin_checks(disable)]
