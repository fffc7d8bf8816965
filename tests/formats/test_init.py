"""The map in ``ovpanoptic.formats``' docstring: every module and name it lists exists where it says."""

from __future__ import annotations

import importlib
import re

import pytest

import ovpanoptic.formats as formats
from ovpanoptic.cli import main

#: A name in double back-quotes that is a Python name (format and CLI names hold '-' or spaces).
_NAME = re.compile(r"(?<!\()``([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)``")


def _rows() -> list[tuple[str, str]]:
    """``(module, the text of its writer, reader and detection columns)`` of each table row."""
    lines = (formats.__doc__ or "").splitlines()
    rules = [k for k, line in enumerate(lines) if line.startswith("=====")]
    last_column = [m.start() for m in re.finditer(r"=+", lines[rules[0]])][-1]
    rows: list[tuple[str, str]] = []
    for line in lines[rules[1] + 1 : rules[2]]:
        found = re.match(r":mod:`\.(\w+)`", line)
        if found:
            rows.append((found.group(1), ""))
        module, text = rows[-1]
        rows[-1] = (module, text + " " + line[len(found.group(0)) if found else 0 : last_column])
    return rows


def test_every_module_and_name_of_the_map_exists_there() -> None:
    rows = _rows()
    assert [m for m, _ in rows] == [
        "coco_panoptic", "coco_instances", "label_studio", "cvat", "cityscapes", "video_panoptic", "yolo", "semantic", "hf",
    ]
    checked = 0
    for module_name, text in rows:
        module = importlib.import_module(f"ovpanoptic.formats.{module_name}")
        for name in _NAME.findall(text):
            owner, attribute = module, name
            if "." in name:  # a submodule's name: push.push_label_studio
                sub, attribute = name.split(".")
                owner = importlib.import_module(f"{module.__name__}.{sub}")
            public = getattr(owner, "__all__", None)
            listed = attribute in public if public is not None else hasattr(owner, attribute)
            assert listed, f"formats map: {module_name} lists {name!r}, which {owner.__name__} does not export"
            checked += 1
    assert checked >= 30


def test_the_map_names_the_commands_that_exist() -> None:
    doc = formats.__doc__ or ""
    assert "``run``" not in doc and "``batch``" not in doc
    assert "``ovpanoptic segment --format NAME``" in doc
    for command in ("segment", "eval", "qa", "package"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
