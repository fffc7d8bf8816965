"""Video panoptic segmentation with ids that stay the same across frames.

* :mod:`.sources`: frames from a video file (PyAV), a folder or a glob, streamed, with a
  :class:`~.sources.FrameSelection` (start, end, stride, count);
* :mod:`.tracks`: track bookkeeping: Hungarian matching of keyframe detections to tracked objects,
  class votes, track ends, per-frame composition (:class:`~.tracks.TrackBook`);
* :mod:`.run`: the loop, keyframes through the image pipeline and the frames between through the
  configured tracker component (``register_trackers``; ``flow``, the default, is optical flow;
  ``sam2-video`` is SAM 2's video predictor);
* :mod:`.output`: the resumable output folder (per-frame PNGs, one JSON, tracks table, overlay video).

May import the core modules (pipeline, config, types, boundary, imageio, atomic, errors,
evaluation) and :mod:`ovpanoptic.demo.render` (drawing); never ``ovpanoptic.builtins`` or the CLI.
Importing it imports neither torch nor PyAV.
"""

from .run import ResumePoint, VideoFrameResult, segment_video
from .sources import Frame, FrameSelection, FrameSource, open_frames
from .tracks import Track, TrackBook, TrackingOptions, TrackRecord

__all__ = [
    "Frame",
    "FrameSelection",
    "FrameSource",
    "ResumePoint",
    "Track",
    "TrackBook",
    "TrackRecord",
    "TrackingOptions",
    "VideoFrameResult",
    "open_frames",
    "segment_video",
]
