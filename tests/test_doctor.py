"""``ovpanoptic doctor``: the environment report and its exit code."""

from __future__ import annotations

import json

from ovpanoptic import doctor
from ovpanoptic.cli import main

from conftest import FAULTY_STARTUP


def test_doctor_reports_versions_device_cache_and_plugins(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("OVPANOPTIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: missing weights are a note (downloaded on first use)
    assert main(["doctor", "--json"]) == 0
    checks = {c["topic"]: c for c in json.loads(capsys.readouterr().out)}
    import numpy
    import torch

    assert checks["package numpy"]["found"].startswith(f"{numpy.__version__} (for everything)")
    assert checks["package torch"]["found"].startswith(torch.__version__.split("+")[0] + " (for the models")
    assert checks["device auto"]["found"] == "cpu"
    assert "torch kernels: " in checks["cpu"]["found"] and "bfloat16 is " in checks["cpu"]["found"]
    assert checks["offline mode"]["found"] == "off: missing weights are downloaded on first use"
    assert checks["weights cache"] == {
        "topic": "weights cache", "found": f"no model weights in {tmp_path / 'hub'}", "ok": False, "required": False,
        "fix": "ovpanoptic download sam2 --size tiny && ovpanoptic download clip (where the hub is reachable)",
    }
    assert checks["ovpanoptic cache"]["found"] == f"{tmp_path / 'cache'} (empty)"
    assert checks["plugin fusion"]["found"] == "built-in; provides fuser: detectron2, fuser: maskformer"
    assert all(c["ok"] or not c["required"] for c in checks.values())


def test_doctor_exits_1_naming_the_fix_for_a_missing_package_and_a_broken_plugin(capsys, monkeypatch, with_faulty_plugin):
    monkeypatch.setattr(doctor, "PACKAGES", (*doctor.PACKAGES, ("ovpanoptic-no-such-dist", "ovpanoptic_no_such_module", True, "a test")))
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", ",".join(n for n in FAULTY_STARTUP if n != "faulty-raises"))
    assert main(["doctor"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    row = next(i for i, line in enumerate(lines) if "package ovpanoptic_no_such_module" in line)
    assert lines[row].startswith("FAIL package ovpanoptic_no_such_module") and lines[row].endswith("missing (needed for a test)")
    assert lines[row + 1].strip() == "fix: run scripts/bootstrap.sh (it installs the pinned versions), or pip install ovpanoptic-no-such-dist"
    row = next(i for i, line in enumerate(lines) if "plugin faulty-raises" in line)
    assert lines[row].startswith("FAIL plugin faulty-raises") and "ovpanoptic-faulty 0.3.0" in lines[row]
    assert "fix: hook register_fusers from plugin 'faulty-raises'" in lines[row + 1]
    # The test suite runs offline with no weights cached: the default preset could not segment.
    row = next(i for i, line in enumerate(lines) if "default preset offline" in line)
    assert lines[row + 1].strip().startswith("fix: ovpanoptic download sam2 --size tiny && ovpanoptic download clip")
    assert captured.err.strip() == (
        "error: 3 required check(s) failed: package ovpanoptic_no_such_module, default preset offline, plugin faulty-raises"
    )


def test_doctor_flags_a_cache_path_that_is_a_file(capsys, monkeypatch, tmp_path):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("OVPANOPTIC_CACHE_DIR", str(tmp_path / "afile"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert main(["doctor", "--json"]) == 1
    checks = {c["topic"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["ovpanoptic cache"] == {
        "topic": "ovpanoptic cache", "found": f"{tmp_path / 'afile'} is a file", "ok": False, "required": True,
        "fix": "point OVPANOPTIC_CACHE_DIR at a folder",
    }


def test_doctor_lists_every_plugin_when_one_cannot_be_loaded(capsys, monkeypatch, with_faulty_plugin):
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", ",".join(n for n in FAULTY_STARTUP if n != "faulty-typo"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert main(["doctor", "--json"]) == 1
    checks = {c["topic"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["plugin faulty-typo"]["ok"] is False and checks["plugin faulty-typo"]["fix"].endswith(
        "did you mean 'register_exporters'? Fix the plugin, or block it with --disable-plugin faulty-typo"
    )
    assert checks["plugin fakes"] == {
        "topic": "plugin fakes", "found": "ovpanoptic-fakes 1.0.0; provides classifier: cycling, exporter: fake-json, fuser: paint, proposal generator: tiles",
        "ok": True, "required": False, "fix": "",
    }
