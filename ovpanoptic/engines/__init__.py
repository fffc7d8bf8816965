"""How a batch runs: :mod:`~ovpanoptic.engines.manifest` (the resumable record of a batch in its
output folder, and the batch's output names) and :mod:`~ovpanoptic.engines.local` (one process,
image after image).

May import the core modules (pipeline, config, types, boundary, imageio, atomic, errors); never
``ovpanoptic.builtins`` or the CLI.
"""
