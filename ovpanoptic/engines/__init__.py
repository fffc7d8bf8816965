"""How a batch runs.

* :mod:`~ovpanoptic.engines.manifest`: the resumable record of a batch in its output folder, and
  the batch's output names;
* :mod:`~ovpanoptic.engines.batch`: what every engine shares: the checks before anything is
  written, skipping, recording, all-or-nothing outputs, the combined files at the end, and the
  per-image work (:func:`~.batch.process_image`);
* :mod:`~ovpanoptic.engines.local`: one process, image after image;
* :mod:`~ovpanoptic.engines.ray_engine`: long-lived pipelines in Ray actors (Ray imported only
  when the engine starts);
* :mod:`~ovpanoptic.engines.video`: a video job (one video into its folder, resumable; several
  videos);
* :mod:`~ovpanoptic.engines.dataset`: zero-shot PQ of a whole dataset (vocabulary from its table,
  a batch, the score and the protocol).

May import the core modules (pipeline, config, types, boundary, imageio, atomic, errors, plugins),
:mod:`ovpanoptic.video` and :mod:`ovpanoptic.evaluation`; never ``ovpanoptic.builtins`` or the CLI.
"""
