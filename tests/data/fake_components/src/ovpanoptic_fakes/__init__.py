"""Installs :class:`ovpanoptic.testing.FakeComponentsPlugin` through an entry point, plus ``slow-json``:
an exporter that takes ``OVPANOPTIC_TEST_SLOW_EXPORT`` seconds (default 0) between creating its
temporary file and renaming it, so a test can kill a run in the middle of a write; and ``gated``: the
``cycling`` classifier, except that from its second image on it waits while the file named by
``OVPANOPTIC_TEST_GATE`` is missing (after creating ``GATE.waiting``), so a test can hold a run at a
known state (its first image written, its folder held) without waiting for a fixed time."""

import json
import os
import tempfile
import time
from pathlib import Path

from ovpanoptic import hookimpl
from ovpanoptic.testing import CyclingClassifier, CyclingConfig, FakeComponentsPlugin


class SlowJSONExporter:
    def __init__(self, config=None, context=None):
        self.delay = float(os.environ.get("OVPANOPTIC_TEST_SLOW_EXPORT", "0"))

    def export(self, result, image, outdir, stem):
        target = Path(outdir) / f"{stem}.slow.json"
        data = {k: v for k, v in result.to_dict().items() if k != "timings"}
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=outdir)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        time.sleep(self.delay)
        os.replace(tmp, target)
        return [target]


class GatedClassifier(CyclingClassifier):
    def prepare(self, image, proposals):
        gate = os.environ.get("OVPANOPTIC_TEST_GATE")
        if gate and self.prepare_calls >= 1:
            Path(gate + ".waiting").touch()
            while not Path(gate).exists():
                time.sleep(0.01)
        return super().prepare(image, proposals)


class SlowPlugin:
    @hookimpl
    def register_exporters(self, register):
        register("slow-json", SlowJSONExporter, description="result summary, written slowly (tests)")

    @hookimpl
    def register_classifiers(self, register):
        register("gated", GatedClassifier, config=CyclingConfig, description="cycling, held at a gate file (tests)")


plugin = FakeComponentsPlugin()
slow = SlowPlugin()
