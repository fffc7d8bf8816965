"""Built-in plugins. Each module here is a plugin registered exactly like a third-party one
(see :data:`ovpanoptic.plugins.BUILTIN_PLUGINS`); core code never imports this package.

Builtins keeps the components: the models (:mod:`.sam2`, :mod:`.clip`), the fusers (:mod:`.fusion`),
the trackers, the refiners, the vocabularies, the oracle, the ``overlay`` and ``summary`` exporters
(:mod:`.exporters`, no tool's file format) and the registrations of the format writers
(``coco-panoptic`` and ``coco-instances`` in :mod:`.exporters`, :mod:`.label_studio`, :mod:`.cvat`,
:mod:`.cityscapes`), whose code lives in :mod:`ovpanoptic.formats`.
"""
