"""Load-aware CPU threads (issue 25, :mod:`ovpanoptic.threads`): the choice from given load
readings, the setting applied and restored around each image by Pipeline.segment_run, the small-ops
stage, ``pipeline.threads`` in config, and nothing touched on an accelerator."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ovpanoptic import threads as threads_mod
from ovpanoptic.config import load_config
from ovpanoptic.errors import ConfigError
from ovpanoptic.testing import make_shapes_image
from ovpanoptic.threads import (
    LoadReading,
    ThreadChoice,
    check_threads_setting,
    choose_threads,
    intra_op_threads,
    many_small_ops,
    read_load,
    small_ops_threads,
    usable_cpus,
)

from conftest import FAKE_OVERRIDES


@pytest.fixture
def torch_threads():
    """Runs the test with torch at as many threads as usable CPUs and puts back what it found."""
    before = torch.get_num_threads()
    torch.set_num_threads(usable_cpus())
    yield usable_cpus()
    torch.set_num_threads(before)


# -- the choice, from made-up readings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "others", "base", "threads", "reason"),
    [
        (2, 0, 2, 2, "quiet: 0 other runnable task(s) on 2 CPU(s)"),
        (2, 1, 2, 3, "1 other runnable task(s) on 2 CPU(s): every core shared, one thread more than CPUs so OpenMP yields instead of spinning"),
        (2, 2, 2, 3, "2 other runnable task(s) on 2 CPU(s): every core shared, one thread more than CPUs so OpenMP yields instead of spinning"),
        (2, 9, 2, 3, "9 other runnable task(s) on 2 CPU(s): every core shared, one thread more than CPUs so OpenMP yields instead of spinning"),
        (16, 0, 16, 16, "quiet: 0 other runnable task(s) on 16 CPU(s)"),
        (16, 3, 16, 13, "3 other runnable task(s) on 16 CPU(s): only the 13 idle CPUs, no thread waits on a preempted sibling"),
        (16, 14, 16, 2, "14 other runnable task(s) on 16 CPU(s): only the 2 idle CPUs, no thread waits on a preempted sibling"),
        (16, 15, 16, 17, "15 other runnable task(s) on 16 CPU(s): every core shared, one thread more than CPUs so OpenMP yields instead of spinning"),
        (16, 3, 4, 4, "quiet: 3 other runnable task(s) on 16 CPU(s)"),  # 13 idle CPUs: enough for our 4
        (16, 15, 4, 1, "15 other runnable task(s) on 16 CPU(s): every core shared, one thread (no barriers)"),
        (1, 0, 1, 1, "quiet: 0 other runnable task(s) on 1 CPU(s)"),
        (1, 1, 1, 2, "1 other runnable task(s) on 1 CPU(s): every core shared, one thread more than CPUs so OpenMP yields instead of spinning"),
    ],
)
def test_auto_chooses_from_the_reading(cpus, others, base, threads, reason):
    reading = LoadReading(cpus, others)
    assert choose_threads("auto", reading, base=base) == ThreadChoice(threads, reason, reading)


def test_a_fixed_setting_or_no_reading():
    assert choose_threads(3, LoadReading(2, 5), base=2) == ThreadChoice(3, "pipeline.threads = 3")
    assert choose_threads(1, None, base=8) == ThreadChoice(1, "pipeline.threads = 1")
    assert choose_threads("auto", None, base=6) == ThreadChoice(6, "no load reading: the process's own count")


@pytest.mark.parametrize("bad", [0, -2, 257, 100000, "fast", "AUTO", True, 2.5, None])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError, match=r"pipeline.threads must be 'auto' or a number of threads from 1 to 256 \(at most the CPUs is what helps\), got "):
        check_threads_setting(bad)
    with pytest.raises(ValueError, match="pipeline.threads must be"):
        choose_threads(bad, LoadReading(2, 0), base=2)


def test_readings_and_choices_are_validated():
    with pytest.raises(ValueError, match="cpus must be an int >= 1, got 0"):
        LoadReading(0, 0)
    with pytest.raises(ValueError, match="others_running must be an int >= 0, got -1"):
        LoadReading(2, -1)
    with pytest.raises(ValueError, match="threads must be an int >= 1, got 0"):
        ThreadChoice(0, "x")
    with pytest.raises(ValueError, match="base must be >= 1, got 0"):
        choose_threads("auto", LoadReading(2, 0), base=0)
    assert LoadReading(2, 5).idle_cpus == 0 and LoadReading(8, 3).idle_cpus == 5


@pytest.mark.parametrize(("current", "cpus", "threads"), [(3, 2, 1), (17, 16, 1), (2, 2, 2), (13, 16, 13), (1, 4, 1)])
def test_small_ops_run_single_threaded_only_when_cores_are_oversubscribed(current, cpus, threads):
    assert small_ops_threads(current, cpus) == threads


# -- applied and restored for real ---------------------------------------------------------------


def test_the_choice_is_applied_and_restored(torch_threads):
    cpus = torch_threads
    calls = []

    def loaded() -> LoadReading:
        calls.append(1)
        return LoadReading(cpus, cpus + 4)

    with intra_op_threads("auto", "cpu", reader=loaded) as choice:
        assert torch.get_num_threads() == cpus + 1 == choice.threads
        with many_small_ops("cpu") as small:  # oversubscribed: the small-ops stage runs on one thread
            assert small == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == cpus + 1
    assert torch.get_num_threads() == cpus and calls == [1]
    with pytest.raises(RuntimeError, match="boom"), intra_op_threads(1, "cpu", reader=loaded) as choice:
        assert torch.get_num_threads() == 1 == choice.threads
        raise RuntimeError("boom")
    assert torch.get_num_threads() == cpus and calls == [1]  # a fixed count reads no load
    with intra_op_threads("auto", "cpu", reader=lambda: LoadReading(cpus, 0)) as choice:
        assert torch.get_num_threads() == cpus == choice.threads
    with many_small_ops("cpu") as small:  # not oversubscribed: unchanged
        assert small == cpus == torch.get_num_threads()


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_nothing_changes_on_an_accelerator(torch_threads, device):
    def never() -> LoadReading:
        raise AssertionError("no load reading on an accelerator")

    with intra_op_threads("auto", device, reader=never) as choice:
        assert choice is None and torch.get_num_threads() == torch_threads
    torch.set_num_threads(torch_threads + 1)
    with many_small_ops(device) as small:
        assert small is None and torch.get_num_threads() == torch_threads + 1


def test_a_busy_process_is_read_as_another_runnable_task():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        reading = read_load()
    finally:
        busy.kill()
        busy.wait()
    assert reading is not None and reading.cpus == usable_cpus()
    assert reading.others_running >= 1


# -- config and the local engine -----------------------------------------------------------------


def test_pipeline_threads_in_config():
    assert load_config("default").pipeline.threads == "auto"
    assert load_config("default", ["pipeline.threads=3"]).pipeline.threads == 3
    assert load_config("default", ["pipeline.threads=auto"]).pipeline.threads == "auto"
    with pytest.raises(ConfigError, match=r"pipeline.threads must be 'auto' or a number of threads from 1 to 256 \(at most the CPUs is what helps\), got 0"):
        load_config("default", ["pipeline.threads=0"])
    with pytest.raises(ConfigError, match=r"pipeline.threads must be 'auto' or a number of threads from 1 to 256 \(at most the CPUs is what helps\), got 'many'"):
        load_config("default", ["pipeline.threads=many"])
    # found by a tester: 100000 threads crashed OpenBLAS (exit 139); a float got "is not a int | str"
    with pytest.raises(ConfigError, match=r"got 100000$"):
        load_config("default", ["pipeline.threads=100000"])
    with pytest.raises(ConfigError, match=r"^pipeline.threads: expected an integer or a string, got 1.5$"):
        load_config("default", ["pipeline.threads=1.5"])


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize(("setting", "others"), [("auto", 99), ("auto", 0), (1, 99)])
def test_the_local_engine_chooses_per_image(tmp_path, monkeypatch, torch_threads, overlap, setting, others):
    """Each image is segmented with the count chosen from the load read just before it (by
    :meth:`Pipeline.segment_run`, which every engine calls); the process's own count is back after every image."""
    from ovpanoptic.engines import local
    from ovpanoptic.pipeline import Pipeline
    from ovpanoptic.testing import FakeComponentsPlugin, registry_with

    cpus = torch_threads
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(make_shapes_image(), 5 * i, axis=1)).save(folder / f"img{i}.png")
    monkeypatch.setattr(threads_mod, "read_load", lambda: LoadReading(cpus, others))
    seen: list[int] = []  # threads while segmenting each image
    inner = Pipeline._segment_run

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return inner(*args, **kwargs)

    monkeypatch.setattr(Pipeline, "_segment_run", spy)
    pipe = Pipeline(
        overrides=[*FAKE_OVERRIDES[:3], f"pipeline.threads={setting}"],
        device="cpu", registry=registry_with(FakeComponentsPlugin()),
    )
    assert pipe.device == "cpu"  # resolved, as the first component that loads a model does (these fakes load none)
    vocabulary = pipe.vocabulary("person, car, road")
    pipe.build_components(["summary"])
    after: list[int] = []
    report = local.run_local(
        pipe, vocabulary, sorted(folder.iterdir()), tmp_path / "out", ["summary"], overlap=overlap,
        on_image=lambda outcome: after.append(torch.get_num_threads()),
    )
    assert report.done == 3
    expected = 1 if setting == 1 else cpus + 1 if others else cpus
    assert seen == [expected] * 3
    assert after == [cpus] * 3 and torch.get_num_threads() == cpus


def test_a_direct_pipeline_call_chooses_once_the_device_is_resolved(tmp_path, monkeypatch, torch_threads):
    """``Pipeline.segment`` (the Python API) runs under the same rule: the rule sits in ``segment_run``, which the
    engines, the Ray workers, the video runner's keyframes and the demo all call. On a process's first image the
    choice is made when the first component that loads a model resolves the device, before that model runs (the
    single-image README command); a model-free pipeline resolves no device and is left alone."""
    from ovpanoptic.pipeline import Pipeline
    from ovpanoptic.testing import FakeComponentsPlugin, registry_with

    cpus = torch_threads
    monkeypatch.setattr(threads_mod, "read_load", lambda: LoadReading(cpus, 99))
    seen: list[tuple[int, int]] = []  # threads (before, after) the device is asked for
    inner = Pipeline._segment_run
    loads_a_model = [False]

    def spy(self, *args, **kwargs):
        before = torch.get_num_threads()
        if loads_a_model[0]:
            assert self.device == "cpu"  # what a component that loads a model does first
        seen.append((before, torch.get_num_threads()))
        return inner(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "_segment_run", spy)
    model_free = Pipeline(overrides=list(FAKE_OVERRIDES[:3]), device="cpu", registry=registry_with(FakeComponentsPlugin()))
    model_free.segment(make_shapes_image(), "person, car, road")
    assert seen == [(cpus, cpus)] and model_free._device is None
    loads_a_model[0] = True
    pipe = Pipeline(overrides=list(FAKE_OVERRIDES[:3]), device="cpu", registry=registry_with(FakeComponentsPlugin()))
    pipe.segment(make_shapes_image(), "person, car, road")  # first image: chosen when the device is resolved
    pipe.segment(make_shapes_image(), "person, car, road")  # later images: chosen before the work
    assert seen[1:] == [(cpus, cpus + 1), (cpus + 1, cpus + 1)]
    assert torch.get_num_threads() == cpus and pipe._on_device is None
