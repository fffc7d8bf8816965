"""Installs :class:`ovpanoptic.testing.FakeComponentsPlugin` through an entry point, plus ``slow-json``:
an exporter that takes ``OVPANOPTIC_TEST_SLOW_EXPORT`` seconds (default 0) between creating its
temporary file and renaming it, so a test can kill a run in the middle of a write."""

import json
import os
import tempfile
import time
from pathlib import Path

from ovpanoptic import hookimpl
from ovpanoptic.testing import FakeComponentsPlugin


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


class SlowPlugin:
    @hookimpl
    def register_exporters(self, register):
        register("slow-json", SlowJSONExporter, description="result summary, written slowly (tests)")


plugin = FakeComponentsPlugin()
slow = SlowPlugin()
