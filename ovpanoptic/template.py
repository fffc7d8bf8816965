"""``ovpanoptic new-plugin DIR``: write a plugin package to start from.

The files come from ``ovpanoptic/data/plugin_template/*.tmpl`` (``string.Template``: ``$name``,
``$package``, ``$distribution``, ``$api``). The package's own tests use the
:mod:`ovpanoptic.testing` kit and pass as written (``tests/test_template.py`` installs one and runs
them). This module imports nothing heavy.
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path
from string import Template

from .constants import PLUGIN_API_VERSION
from .errors import InputError

__all__ = ["write_plugin_template"]

#: template file -> destination, relative to the new package's folder ($package is substituted)
_FILES: tuple[tuple[str, str], ...] = (
    ("pyproject.toml.tmpl", "pyproject.toml"),
    ("README.md.tmpl", "README.md"),
    ("plugin.py.tmpl", "src/$package/__init__.py"),
    ("test_plugin.py.tmpl", "tests/test_$package.py"),
)

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def write_plugin_template(directory: Path, name: str | None = None) -> list[Path]:
    """Write a plugin package named ``name`` (default: the folder's name) into ``directory``.

    :param directory: the package folder; it must not exist, or be empty.
    :param name: the plugin (entry-point) name: lower-case letters, digits and single dashes.
    :return: the files written.
    :raises InputError: the folder is not empty, or the name is not valid.
    """
    directory = Path(directory)
    name = name or directory.resolve().name
    if not _NAME.match(name):
        raise InputError(
            f"plugin name {name!r} is invalid: use lower-case letters, digits and single dashes (e.g. 'my-plugin'); "
            "pass one with --name"
        )
    from .plugins import BUILTIN_PLUGINS

    if name in {n for n, _ in BUILTIN_PLUGINS}:
        raise InputError(f"plugin name {name!r} is a built-in plugin's name: choose another with --name")
    package = "ovpanoptic_" + name.replace("-", "_")
    if keyword.iskeyword(package) or not package.isidentifier():  # pragma: no cover - the pattern prevents it
        raise InputError(f"plugin name {name!r} gives the invalid package name {package!r}")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError(f"{directory} exists and is not an empty folder: choose a new folder for the plugin")
    values = {"name": name, "package": package, "distribution": f"ovpanoptic-{name}", "api": PLUGIN_API_VERSION}
    files = resources.files("ovpanoptic").joinpath("data", "plugin_template")
    written = []
    for source, dest in _FILES:
        text = Template(files.joinpath(source).read_text("utf-8")).substitute(values)
        path = directory / Template(dest).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        written.append(path)
    return written
