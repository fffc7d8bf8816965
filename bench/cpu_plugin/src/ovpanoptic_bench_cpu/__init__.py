"""A classifier for engine benchmarks: :class:`ovpanoptic.testing.CyclingClassifier`'s answer after a
fixed amount of single-threaded CPU work per image (``work`` sorts of 200 000 floats), so that the
machine's cores, not a model, are the limit and every engine does the same work per image."""

from dataclasses import dataclass

import numpy as np

from ovpanoptic import hookimpl
from ovpanoptic.testing import CyclingClassifier, CyclingConfig, FakeComponentsPlugin


@dataclass(frozen=True)
class BusyConfig(CyclingConfig):
    """``work``: sorts of 200 000 floats per image (about 12 ms each on one core of the 2-core CPU)."""

    work: int = 16


class BusyClassifier(CyclingClassifier):
    def prepare(self, image, proposals):
        values = np.random.default_rng(0).random(200_000)
        for _ in range(self.config.work):
            np.sort(values, kind="quicksort")
        return super().prepare(image, proposals)


class BenchPlugin:
    @hookimpl
    def register_classifiers(self, register):
        register("cpu-bound", BusyClassifier, config=BusyConfig, description="cycling after fixed CPU work (benchmarks)")


plugin = BenchPlugin()
#: tiles, cycling, paint and fake-json, installed under this distribution's name
fakes = FakeComponentsPlugin()
