"""``ovpanoptic new-plugin``: the package it writes installs, and its own tests pass."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ovpanoptic.cli import main


def test_new_plugin_package_installs_and_its_tests_pass(tmp_path, capsys):
    pkg = tmp_path / "my-seg"
    assert main(["new-plugin", str(pkg)]) == 0
    out = capsys.readouterr().out
    assert f"next: pip install -e {pkg} && pytest {pkg}" in out
    assert sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", "src/ovpanoptic_my_seg/__init__.py", "tests/test_ovpanoptic_my_seg.py",
    ]
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--disable-pip-version-check", "--target", str(site), str(pkg)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pkg / "tests")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    listing = subprocess.run([sys.executable, "-m", "ovpanoptic", "plugins", "my-seg"], capture_output=True, text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "proposal generator my-seg-grid  (plugin my-seg, ovpanoptic-my-seg)" in listing.stdout
    assert "    rows: int = 2" in listing.stdout


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("My_Plugin", "plugin name 'My_Plugin' is invalid: use lower-case letters, digits and single dashes"),
        ("9lives", "plugin name '9lives' is invalid"),
    ],
)
def test_new_plugin_refuses_bad_names_and_non_empty_folders(tmp_path, capsys, name, message):
    assert main(["new-plugin", str(tmp_path / "x"), "--name", name]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["new-plugin", str(tmp_path / "full")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
