"""A plugin written before ovpanoptic shipped built-ins of the same names: one name of each kind
(exporter ``cityscapes``, proposal generator ``oracle``, classifier ``oracle``, fuser ``maskformer``,
tracker ``hold``, vocabulary ``tabletop``, prompt templates ``short``). Its components are
``ovpanoptic.testing``'s deterministic ones; its exporter writes ``<stem>.<suffix>.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ovpanoptic import Category, Vocabulary, hookimpl
from ovpanoptic.atomic import atomic_write_bytes
from ovpanoptic.testing import CyclingClassifier, CyclingConfig, PaintConfig, PaintFuser, TilesConfig, TilesGenerator

OVPANOPTIC_PLUGIN_API = "1.0"


@dataclass(frozen=True)
class ProbeExportConfig:
    suffix: str = "probe"


class ProbeExporter:
    def __init__(self, config: ProbeExportConfig, context=None):
        self.config = config

    def export(self, result, image, outdir, stem):
        path = Path(outdir) / f"{stem}.{self.config.suffix}.json"
        atomic_write_bytes(path, json.dumps({"segments": len(result.segments)}).encode())
        return [path]


class KeepTracker:
    def __init__(self, config=None, context=None):
        self.config = config

    def track(self, frames, seeds, *, progress=None):
        for _ in frames[1:]:
            yield seeds


@hookimpl
def register_exporters(register):
    register("cityscapes", ProbeExporter, config=ProbeExportConfig, description="the probe's own cityscapes export")


@hookimpl
def register_proposal_generators(register):
    register("oracle", TilesGenerator, config=TilesConfig, description="tiles under a built-in's name")


@hookimpl
def register_classifiers(register):
    register("oracle", CyclingClassifier, config=CyclingConfig, description="cycling under a built-in's name")


@hookimpl
def register_fusers(register):
    register("maskformer", PaintFuser, config=PaintConfig, description="paint under a built-in's name")


@hookimpl
def register_trackers(register):
    register("hold", KeepTracker, description="keeps the seeds, under a built-in's name")


@hookimpl
def register_vocabularies(register):
    register(
        "tabletop",
        lambda: Vocabulary((Category(1, "square", True), Category(2, "bar", False)), name="probe-tabletop"),
        description="the probe's tabletop",
    )


@hookimpl
def register_prompt_templates(register):
    register("short", ["{}"], description="the probe's short templates")
