"""Video panoptic segmentation with ids that stay the same across frames.

* :mod:`.sources`: frames from a video file (PyAV), a folder or a glob, streamed, with a
  :class:`~.sources.FrameSelection` (start, end, stride, count);
* :mod:`.tracks`: track bookkeeping: Hungarian matching of keyframe detections to tracked objects,
  class votes, track ends, per-frame composition (:class:`~.tracks.TrackBook`);
* :mod:`.run`: the loop, keyframes through the image pipeline and the frames between through the
  configured tracker component (``register_trackers``; ``flow``, the default, is optical flow;
  ``sam2-video`` is SAM 2's video predictor). It takes the image pipeline as an argument typed by
  :class:`~.run.ImagePipeline` (what it needs of :class:`ovpanoptic.pipeline.Pipeline`);
* :mod:`.output`: the resumable output folder (per-frame PNGs, one JSON, tracks table, overlay video).

Inside the package: ``sources`` and ``tracks`` import no sibling, ``run`` imports both, ``output``
imports all three. May import the core modules below the pipeline (config, components, types,
boundary, imageio, atomic, folderlock, errors, constants), :mod:`ovpanoptic.evaluation` (panoptic PNG
ids) and :mod:`ovpanoptic.drawing`; never :mod:`ovpanoptic.pipeline` (it imports this
package for :meth:`~ovpanoptic.pipeline.Pipeline.segment_video`), ``ovpanoptic.builtins``, the
engines or the CLI. Importing it imports neither torch nor PyAV.
"""

from .run import ImagePipeline, KeyframeRun, ResumePoint, VideoFrameResult, segment_video
from .sources import Frame, FrameSelection, FrameSource, open_frames
from .tracks import Track, TrackBook, TrackingOptions, TrackRecord

__all__ = [
    "Frame",
    "FrameSelection",
    "FrameSource",
    "ImagePipeline",
    "KeyframeRun",
    "ResumePoint",
    "Track",
    "TrackBook",
    "TrackRecord",
    "TrackingOptions",
    "VideoFrameResult",
    "open_frames",
    "segment_video",
]
