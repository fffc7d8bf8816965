"""docs/plugins.md's "Your first plugin", executed: its files are written, its commands run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from PIL import Image

from ovpanoptic.testing import make_shapes_image

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BLOCK = re.compile(r"<!-- (file: (?P<path>\S+)|run) -->\n```\w*\n(?P<body>.*?)```", re.S)


def _blocks():
    files, commands = {}, []
    for m in BLOCK.finditer(DOCS.read_text("utf-8")):
        if m["path"]:
            files[m["path"]] = m["body"]
        else:
            commands += [line for line in m["body"].splitlines() if line.strip()]
    return files, commands


def test_docs_walkthrough_runs_as_written(tmp_path, plugin_site):
    files, commands = _blocks()
    assert sorted(files) == ["hello-plugin/pyproject.toml", "hello-plugin/src/ovpanoptic_hello/__init__.py", "hello-plugin/tests/test_hello.py"]
    assert [c.split()[:2] for c in commands] == [["pip", "install"], ["ovpanoptic", "plugins"], ["pytest", "hello-plugin/tests"], ["ovpanoptic", "segment"]]
    for rel, body in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body, "utf-8")
    Image.fromarray(make_shapes_image()).save(tmp_path / "photo.jpg")
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(plugin_site), os.environ.get("PYTHONPATH", "")]), "OVPANOPTIC_DISABLE_PLUGINS": ""}
    outputs = []
    for line in commands:
        argv = shlex.split(line)
        if argv[:3] == ["pip", "install", "-e"]:  # into a target folder instead of the test's environment
            argv = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--disable-pip-version-check", "--target", str(site), argv[3]]
        elif argv[0] == "ovpanoptic":
            argv = [sys.executable, "-m", "ovpanoptic", *argv[1:]]
            if argv[3] == "segment":  # no weights here: the kit's classifier and fuser
                argv += ["--set", "pipeline.classifier=cycling", "--set", "pipeline.fuser=paint", "--device", "cpu", "--no-progress"]
        elif argv[0] == "pytest":
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *argv[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
        outputs.append(proc.stdout)
    assert outputs[1].splitlines() == [
        "plugin hello (ovpanoptic-hello 0.1.0)",
        "proposal generator hello-grid  (plugin hello, ovpanoptic-hello)",
        "  a grid of rectangles",
        "  options (--set proposal_generator.hello-grid.KEY=VALUE):",
        "    cells: int = 2",
        "exporter hello-csv  (plugin hello, ovpanoptic-hello)",
        "  STEM.hello.csv: id, class, area",
        "  options: none",
    ]
    assert "1 passed" in outputs[2]
    # 2x2 grid of a 48x64 image, classes cycling person/car over the 4 cells (both things)
    assert (tmp_path / "out" / "photo.hello.csv").read_text().splitlines() == [
        "id,class,area", "1,person,768", "2,car,768", "3,person,768", "4,car,768",
    ]
