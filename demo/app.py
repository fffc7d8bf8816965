"""The ovpanoptic Gradio demo.

    python demo/app.py [--host 127.0.0.1] [--port 7860] [--config NAME|PATH] [--max-file-size 25mb]

is ``ovpanoptic demo`` with the same options (see ``ovpanoptic demo --help``). Importing this file
builds and launches nothing: :func:`build_demo` is the factory
(``build_demo(pipeline=None, *, config=None, ...) -> gr.Blocks``) and :func:`launch_demo` serves
it. The app's code lives in the :mod:`ovpanoptic.demo` package.
"""

from __future__ import annotations

import sys

from ovpanoptic.demo import build_demo, launch_demo

__all__ = ["build_demo", "launch_demo"]

if __name__ == "__main__":
    from ovpanoptic.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
