"""The plugin boundary: every call from the core into plugin code, and every check of what comes back.

The pipeline, the registry, the CLI, the demo and the :mod:`ovpanoptic.testing` kit all go through
this module, so the product and the kit can never disagree about what a plugin may do.

* :func:`call` runs one call into plugin code (a hook, a factory, ``generate``, ``prepare``,
  ``score``, ``fuse``, ``export``, a vocabulary loader or parser). An exception that is not an
  :class:`~ovpanoptic.errors.OvpanopticError` (those carry their own message and fix) becomes a
  :class:`~ovpanoptic.errors.ComponentError` naming the plugin (name and distribution), the
  component, the call and the fix.
* ``check_*`` validate what crossed the boundary against the documented contract (types, shapes,
  dtypes, finiteness, ranges, ids, vocabulary identity, sizes, written paths) and raise the same
  :class:`~ovpanoptic.errors.ComponentError` when it is broken.
* :func:`readonly_image` is the one rule for images handed to components: a read-only view, so a
  component can never change the caller's array (copy it with ``np.array(image)`` to modify it).

This module may import :mod:`ovpanoptic.types`, :mod:`ovpanoptic.components` and
:mod:`ovpanoptic.errors`; it imports no plugin code and no model code.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .components import KINDS, ComponentContext, ComponentSpec
from .constants import MAX_PROMPT_MASKS
from .errors import (
    Cancelled,
    ComponentError,
    ConfigError,
    ExportError,
    ImageReadError,
    InputError,
    MissingDependencyError,
    VocabularyError,
    WeightsError,
)
from .types import (
    ClassScores,
    PanopticResult,
    ProposalSet,
    Segment,
    TrackMasks,
    Vocabulary,
    masks_to_boxes_xyxy,
    readonly_view,
    size_text,
)

__all__ = [
    "ENVIRONMENT_ERRORS",
    "EXPORT_ERRORS",
    "USER_ERRORS",
    "VOCABULARY_ERRORS",
    "BoxTolerance",
    "Origin",
    "Target",
    "build_component",
    "call",
    "check_download",
    "check_export",
    "check_prompt_proposals",
    "check_proposals",
    "check_refined",
    "check_result",
    "check_scores",
    "check_vocabulary",
    "inside",
    "readonly_image",
    "roll_back",
    "snapshot_files",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Proposal boxes may be off the masks' tight boxes by at most this many pixels on any side.
BoxTolerance: float = 1.0

#: What each component kind must offer: method -> (arguments bound to check its signature, text).
_METHODS: dict[str, dict[str, tuple[tuple[tuple[Any, ...], dict[str, Any]], str]]] = {
    "proposal_generator": {"generate": (((None,), {"progress": None}), "generate(image, *, progress=None)")},
    "classifier": {
        "prepare": (((None, None), {}), "prepare(image, proposals)"),
        "score": (((None, None), {}), "score(prepared, vocabulary)"),
    },
    "fuser": {"fuse": (((None, None, None), {}), "fuse(proposals, scores, vocabulary)")},
    "exporter": {"export": (((None, None, None, None), {}), "export(result, image, outdir, stem)")},
    "tracker": {"track": (((None, None), {"progress": None}), "track(frames, seeds, *, progress=None)")},
    "refiner": {"refine": (((None, None), {}), "refine(result, image)")},
}


@dataclass(frozen=True)
class Origin:
    """Where a plugin comes from.

    :param plugin: the plugin's name (its entry-point name, or the name it was registered under).
    :param distribution: the installed distribution that provides it.
    :param version: that distribution's version.
    :param builtin: ``True`` for the plugins shipped in ``ovpanoptic.builtins``.
    """

    plugin: str
    distribution: str = "(registered in code)"
    version: str = ""
    builtin: bool = False

    def describe(self) -> str:
        """``plugin 'x' (distribution ovpanoptic-x 1.0)`` or ``built-in plugin 'sam2'``."""
        if self.builtin:
            return f"built-in plugin {self.plugin!r}"
        if self.distribution == Origin.distribution:
            return f"plugin {self.plugin!r} {self.distribution}"
        dist = f"{self.distribution} {self.version}".strip()
        return f"plugin {self.plugin!r} (distribution {dist})"


@dataclass(frozen=True)
class Target:
    """The plugin code a call goes to, for messages.

    :param what: the component or hook, e.g. ``"proposal generator 'tiles'"`` or
        ``"hook register_fusers"``.
    :param origin: the plugin providing it.
    :param fix: what the user can do meanwhile (``--disable-plugin NAME``, another component).
    """

    what: str
    origin: Origin
    fix: str

    @classmethod
    def component(cls, spec: ComponentSpec, origin: Origin) -> Target:
        """The target for a registered component (the fix names the config key or ``--format``)."""
        kind = KINDS[spec.kind]
        if spec.kind == "exporter":
            other = f"leave out --format {spec.name}"
        elif spec.kind == "refiner":
            other = f"leave {spec.name!r} out of pipeline.refiners"
        else:
            other = f"choose another {kind} with --set pipeline.{spec.kind}=NAME"
        return cls(f"{kind} {spec.name!r}", origin, f"{other}, or block the plugin with --disable-plugin {origin.plugin}")

    @classmethod
    def hook(cls, hook_name: str, origin: Origin) -> Target:
        """The target for one plugin's implementation of a hook."""
        return cls(f"hook {hook_name}", origin, f"block the plugin with --disable-plugin {origin.plugin}")

    def error(self, call_name: str, problem: str, rule: str = "") -> ComponentError:
        """A :class:`ComponentError` for this target: the problem, the contract rule and the fix."""
        rule_text = f" {rule.rstrip('.')}." if rule else ""
        message = (
            f"{self.what} from {self.origin.describe()} failed in {call_name}: {problem.rstrip('.')}.{rule_text} "
            f"This is a fault in the plugin: report it to its authors; meanwhile {self.fix}"
        )
        return ComponentError(message, plugin=self.origin.plugin, component=self.what, call=call_name)


#: Longest part of a plugin's exception message quoted in an error (the rest is in ``-vv``).
MAX_QUOTED = 300


def _exception_text(exc: BaseException) -> str:
    """``Type: first line of the message`` (the whole exception stays chained as the cause; the CLI
    prints its traceback with ``-vv``)."""
    try:
        lines = str(exc).strip().splitlines()
    except Exception as inner:  # noqa: BLE001 - a plugin's exception whose __str__ fails
        return f"{type(exc).__name__} (its message cannot be shown: {type(inner).__name__})"
    text = lines[0].strip() if lines else ""
    if len(text) > MAX_QUOTED:
        text = text[:MAX_QUOTED] + "..."
    elif len(lines) > 1:
        text += " (...)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: Errors a component raises on purpose for problems the *user* must fix; they reach the user
#: unchanged (an unreadable or unsuitable image, a bad option, missing weights or packages). Any
#: other exception from plugin code, ovpanoptic errors of other kinds included, is reported as a
#: fault of the plugin. Calls that deal with the user's class names add ``VocabularyError``
#: (:data:`VOCABULARY_ERRORS`); calls that write the user's output folder add ``ExportError``
#: (:data:`EXPORT_ERRORS`).
USER_ERRORS: tuple[type[BaseException], ...] = (InputError, ImageReadError, ConfigError, WeightsError, MissingDependencyError)
#: The user errors of calls that take no user input (vocabulary loaders): missing weights, data files
#: or packages are still the environment's, with their own fix.
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (WeightsError, MissingDependencyError)
VOCABULARY_ERRORS: tuple[type[BaseException], ...] = (*USER_ERRORS, VocabularyError)
#: ``OSError`` too: a full disk or a read-only folder is the environment's, not the plugin's.
EXPORT_ERRORS: tuple[type[BaseException], ...] = (*USER_ERRORS, ExportError, OSError)


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves to a place inside ``root``."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def call(
    target: Target,
    call_name: str,
    fn: Callable[..., T],
    *args: Any,
    user_errors: tuple[type[BaseException], ...] = USER_ERRORS,
    **kwargs: Any,
) -> T:
    """Call plugin code; turn an unexpected exception into a :class:`ComponentError`.

    :param target: who is called (for the message).
    :param call_name: the call as users read it, e.g. ``"generate()"``.
    :param user_errors: exception types that are the user's to fix in this call and pass through
        unchanged (default :data:`USER_ERRORS`; a vocabulary loader passes none, since the user only
        chose its name).
    :raises ComponentError: any other exception (``SystemExit`` included) raised by the plugin code.
        ``KeyboardInterrupt`` and :class:`~ovpanoptic.errors.Cancelled` (raised by the caller's
        progress callback inside the plugin) pass through.
    """
    try:
        return fn(*args, **kwargs)
    except (*user_errors, Cancelled):  # Cancelled: raised by the caller's progress callback
        raise
    except (Exception, SystemExit) as exc:
        rule = ""
        text = _exception_text(exc)
        if isinstance(exc, ValueError) and ("read-only" in text or "WRITEABLE" in text):
            rule = "Images, masks and scores handed to components are read-only: copy before changing them (np.array(image))"
        raise target.error(call_name, f"raised {text}", rule) from exc


def readonly_image(image: np.ndarray) -> np.ndarray:
    """A read-only view of ``image`` that cannot be made writable again (see
    :func:`~ovpanoptic.types.readonly_view`); the caller's array keeps its own flags and data.

    Every image handed to a component is such a view: components must not change their inputs.
    """
    return readonly_view(image)


# -- building components ----------------------------------------------------------------------


def _check_methods(target: Target, kind: str, obj: Any) -> None:
    for method, ((args, kwargs), text) in _METHODS[kind].items():
        fn = getattr(obj, method, None)
        if not callable(fn):
            raise target.error("its factory", f"the factory built a {type(obj).__qualname__!r} object, which has no {method}()", f"A {KINDS[kind]} must have {text}")
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # builtins without signatures: trust them
            continue
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise target.error(
                "its factory",
                f"{type(obj).__name__}.{method}{signature} cannot be called as {text} ({exc})",
                f"A {KINDS[kind]} must accept {text}",
            ) from None


def build_component(spec: ComponentSpec, config: Any, context: ComponentContext, origin: Origin) -> Any:
    """Build a component through its registered factory, then check the object it built.

    :param spec: the registered component.
    :param config: an instance of ``spec.config_class`` (see :meth:`ovpanoptic.config.Config.component_config`).
    :param context: the runtime context handed to the factory.
    :raises ComponentError: the factory raised, or the object lacks a method of its kind's
        Protocol or takes other arguments than the Protocol passes.
    :raises OvpanopticError: one of :data:`USER_ERRORS` the factory raised on purpose (a bad option,
        a checkpoint that does not exist, an unknown model size, a missing package), unchanged.
    """
    target = Target.component(spec, origin)
    name = f"its factory {getattr(spec.factory, '__qualname__', type(spec.factory).__name__)}(config, context)"
    obj = call(target, name, spec.factory, config, context)
    if obj is None or inspect.isclass(obj):
        what = "None" if obj is None else f"the class {obj.__name__}"
        raise target.error("its factory", f"the factory returned {what}, not a built component", "A factory returns an instance: return MyComponent(config, context)")
    _check_methods(target, spec.kind, obj)
    return obj


# -- results ----------------------------------------------------------------------------------



def check_proposals(target: Target, value: Any, image_size: tuple[int, int], call_name: str = "generate()") -> ProposalSet:
    """Check what ``generate()`` returned for an image of ``image_size`` ``(H, W)``.

    The contract: a :class:`ProposalSet` whose ``masks`` are ``(N, H, W)`` bool at the image's
    size, none empty, ``boxes_xyxy`` the masks' tight boxes (within :data:`BoxTolerance` px),
    ``scores`` ``(N,)`` finite float32.

    :return: the proposals as a plain, validated :class:`ProposalSet` (read-only arrays).
    :raises ComponentError: naming the first broken rule.
    """
    rule = f"{call_name} returns a ProposalSet (ProposalSet.from_masks(masks, scores) builds one)"
    if not isinstance(value, ProposalSet):
        raise target.error(call_name, f"it returned {type(value).__name__}, not a ProposalSet", rule)
    try:  # the constructor's checks again, whatever built the object (subclass, object.__new__)
        value = ProposalSet(value.masks, value.boxes_xyxy, value.scores)
    except Exception as exc:  # noqa: BLE001
        raise target.error(call_name, f"it returned an invalid ProposalSet: {_exception_text(exc)}", rule) from None
    if value.image_size != tuple(image_size):
        raise target.error(
            call_name,
            f"masks are {size_text(value.image_size)} for an image of {size_text(image_size)} (width x height)",
            f"Masks must be at the size of the image passed to {call_name}",
        )
    if len(value):
        empty = np.flatnonzero(value.areas == 0)
        if len(empty):
            raise target.error(call_name, f"{len(empty)} of {len(value)} masks are empty (first: {int(empty[0])})", "Drop empty masks")
        tight = masks_to_boxes_xyxy(value.masks)
        off = np.abs(value.boxes_xyxy - tight).max(axis=1)
        bad = np.flatnonzero(off > BoxTolerance)
        if len(bad):
            i = int(bad[0])
            raise target.error(
                call_name,
                f"box {i} is {value.boxes_xyxy[i].tolist()} but its mask's tight box is {tight[i].tolist()}",
                "boxes_xyxy are the masks' tight XYXY boxes, max side exclusive (ProposalSet.from_masks computes them)",
            )
    return value


def check_prompt_proposals(target: Target, value: Any, image_size: tuple[int, int], call_name: str = "segment_prompt()") -> ProposalSet:
    """Check what ``segment_prompt()`` returned for an image of ``image_size`` ``(H, W)``: the
    contract of :func:`check_proposals`, at most :data:`~ovpanoptic.constants.MAX_PROMPT_MASKS`
    masks, best first (scores not increasing).

    :raises ComponentError: naming the first broken rule.
    """
    value = check_proposals(target, value, image_size, call_name)
    if len(value) > MAX_PROMPT_MASKS:
        raise target.error(
            call_name, f"it returned {len(value)} masks for one prompt", f"Return at most {MAX_PROMPT_MASKS} candidates, best first"
        )
    rising = np.flatnonzero(np.diff(value.scores) > 0)
    if len(rising):
        i = int(rising[0])
        raise target.error(
            call_name,
            f"mask {i + 1} scores {float(value.scores[i + 1]):g}, more than mask {i} ({float(value.scores[i]):g})",
            "Candidates come best first: sort them by score, highest first",
        )
    return value


def check_scores(target: Target, value: Any, n_proposals: int, vocabulary: Vocabulary, call_name: str = "score()") -> ClassScores:
    """Check what ``score()`` returned for ``n_proposals`` proposals and ``vocabulary``.

    The contract: :class:`ClassScores` with one row per proposal and one column per category in
    vocabulary order (``category_ids == vocabulary.ids``); ``probs`` float32, finite, >= 0, rows
    summing to at most 1; ``logits`` float32 without NaN or +inf.

    :raises ComponentError: naming the first broken rule.
    """
    rule = "score() returns ClassScores(logits, probs, category_ids=vocabulary.ids)"
    if not isinstance(value, ClassScores):
        raise target.error(call_name, f"it returned {type(value).__name__}, not ClassScores", rule)
    try:  # the constructor's checks again, whatever built the object
        value = ClassScores(value.logits, value.probs, tuple(value.category_ids), value.temperature, getattr(value, "embeddings", None))
    except Exception as exc:  # noqa: BLE001
        raise target.error(call_name, f"it returned invalid ClassScores: {_exception_text(exc)}", rule) from None
    if len(value) != n_proposals:
        raise target.error(call_name, f"it returned {len(value)} rows for {n_proposals} proposals", "One row per proposal, in order")
    if value.category_ids != vocabulary.ids:
        raise target.error(
            call_name,
            f"its columns are categories {list(value.category_ids[:8])}, the vocabulary's are {list(vocabulary.ids[:8])}",
            "One column per category, in vocabulary order",
        )
    lg = value.logits
    if lg.size and (np.isnan(lg).any() or np.isposinf(lg).any()):
        raise target.error(call_name, "logits contain NaN or +inf", "logits are finite (or -inf for impossible classes)")
    return value


def check_result(target: Target, value: Any, vocabulary: Vocabulary, image_size: tuple[int, int], call_name: str = "fuse()") -> PanopticResult:
    """Check what ``fuse()`` returned: a :class:`PanopticResult` at ``image_size`` over ``vocabulary``.

    :class:`PanopticResult` checks its own invariants (int32 map, unique segment ids, one segment
    per stuff class, exact areas and boxes) when built; this checks its size and its vocabulary
    (a result over another vocabulary would be exported with categories the user never asked for).

    :return: the result as a plain, validated :class:`PanopticResult`.
    :raises ComponentError: naming the first broken rule.
    """
    rule = "fuse() returns PanopticResult.from_map(panoptic_map, labels, vocabulary) at the proposals' size"
    if not isinstance(value, PanopticResult):
        raise target.error(call_name, f"it returned {type(value).__name__}, not a PanopticResult", rule)
    if not isinstance(value.vocabulary, Vocabulary) or value.vocabulary != vocabulary:
        other = value.vocabulary
        shown = f"{other.name!r} {list(other.names[:5])}" if isinstance(other, Vocabulary) else type(other).__name__
        raise target.error(
            call_name,
            f"the result is over vocabulary {shown}, not the one passed to fuse() {vocabulary.name!r} {list(vocabulary.names[:5])}",
            "Build the result over the vocabulary passed to fuse()",
        )
    try:  # the constructors' checks again (map, segments, categories), whatever built the object
        segments = tuple(Segment(s.id, s.category_id, s.isthing, s.score, s.area, s.bbox_xyxy) for s in value.segments)
        value = PanopticResult(value.panoptic_map, segments, vocabulary, dict(value.timings))
    except Exception as exc:  # noqa: BLE001
        raise target.error(call_name, f"it returned an invalid PanopticResult: {_exception_text(exc)}", rule) from None
    if value.image_size != tuple(image_size):
        raise target.error(
            call_name, f"the result is {size_text(value.image_size)} for proposals of {size_text(image_size)} (width x height)", rule
        )
    return value


def check_refined(target: Target, value: Any, before: PanopticResult, call_name: str = "refine()") -> PanopticResult:
    """Check what ``refine()`` returned for the result ``before``.

    The contract: a valid :class:`PanopticResult` (its own invariants: int32 map, one segment per
    id, exact areas and boxes, one segment per stuff class) of the same size over the same
    vocabulary, whose segments are among ``before``'s, each with its category: a refiner may change
    a segment's pixels and score and may drop segments (they are logged), never add one or relabel it.

    :return: the result as a plain, validated :class:`PanopticResult`.
    :raises ComponentError: naming the first broken rule.
    """
    rule = (
        f"{call_name} returns PanopticResult.from_map(new_map, {{id: (category_id, score)}}, result.vocabulary) at the "
        "result's size, keeping each segment's id and category"
    )
    if not isinstance(value, PanopticResult):
        raise target.error(call_name, f"it returned {type(value).__name__}, not a PanopticResult", rule)
    if not isinstance(value.vocabulary, Vocabulary) or value.vocabulary != before.vocabulary:
        shown = value.vocabulary.name if isinstance(value.vocabulary, Vocabulary) else type(value.vocabulary).__name__
        raise target.error(
            call_name, f"the result is over vocabulary {shown!r}, not the one of the result it was given {before.vocabulary.name!r}", rule
        )
    try:  # the constructors' checks again, whatever built the object
        segments = tuple(Segment(s.id, s.category_id, s.isthing, s.score, s.area, s.bbox_xyxy) for s in value.segments)
        value = PanopticResult(value.panoptic_map, segments, before.vocabulary, {**before.timings, **dict(value.timings)})
    except Exception as exc:  # noqa: BLE001
        raise target.error(call_name, f"it returned an invalid PanopticResult: {_exception_text(exc)}", rule) from None
    if value.image_size != before.image_size:
        raise target.error(
            call_name, f"the result is {size_text(value.image_size)} for a result of {size_text(before.image_size)} (width x height)", rule
        )
    old = {s.id: s for s in before.segments}
    added = sorted(s.id for s in value.segments if s.id not in old)
    if added:
        raise target.error(call_name, f"it added segments {added[:10]} that the result it was given does not have", rule)
    for s in value.segments:
        if s.category_id != old[s.id].category_id:
            names = before.vocabulary.by_id(old[s.id].category_id).name, before.vocabulary.by_id(s.category_id).name
            raise target.error(call_name, f"it changed the category of segment {s.id} from {names[0]!r} to {names[1]!r}", rule)
    dropped = sorted(set(old) - {s.id for s in value.segments})
    if dropped:
        log.debug("%s dropped segments %s in %s", target.what, dropped[:20], call_name)
    return value


def check_track_masks(
    target: Target, value: Any, seed_ids: Any, image_size: tuple[int, int], frame: int, call_name: str = "track()"
) -> TrackMasks:
    """Check one item a tracker's ``track()`` yielded: a :class:`TrackMasks` at the frames' size
    ``(H, W)`` whose ids are among the seeds' ``seed_ids``.

    :param frame: the item's position in the window (1 = the frame after the keyframe), for the message.
    :return: the validated masks (read-only arrays).
    :raises ComponentError: naming the first broken rule.
    """
    rule = f"{call_name} yields one TrackMasks per frame after the keyframe (TrackMasks.from_dict({{track_id: mask}}, H, W))"
    if not isinstance(value, TrackMasks):
        raise target.error(call_name, f"it yielded {type(value).__name__} for frame {frame} of the window, not TrackMasks", rule)
    try:
        value = TrackMasks(value.ids, value.masks)
    except Exception as exc:  # noqa: BLE001
        raise target.error(call_name, f"it yielded invalid TrackMasks for frame {frame}: {_exception_text(exc)}", rule) from None
    if len(value) and value.image_size != tuple(image_size):
        raise target.error(
            call_name, f"masks of frame {frame} are {size_text(value.image_size)} for frames of {size_text(image_size)} (width x height)", "Masks must be at the frames' size"
        )
    unknown = sorted(set(value.ids.tolist()) - {int(i) for i in seed_ids})
    if unknown:
        raise target.error(call_name, f"frame {frame} has track ids {unknown[:10]} that were not seeded", "Yield only the seeds' track ids")
    return value


def check_vocabulary(target: Target, value: Any, call_name: str) -> Vocabulary:
    """Check that a vocabulary loader or parser returned a :class:`Vocabulary`."""
    if not isinstance(value, Vocabulary):
        raise target.error(call_name, f"it returned {type(value).__name__}, not a Vocabulary", "Return ovpanoptic.Vocabulary (see ovpanoptic.vocabulary.build_vocabulary)")
    return value


def check_export(target: Target, value: Any, outdir: Path, call_name: str = "export()") -> list[Path]:
    """Check what ``export()`` returned: a list of the files it wrote, each inside ``outdir``.

    :raises ComponentError: not a list or tuple of paths (``None``, a ``str``, a generator, a set),
        a path given twice, a path that is not an existing file, or a path outside the output folder.
    """
    rule = "export() returns a list of the paths of the files it wrote inside the output folder"
    if not isinstance(value, (list, tuple)):
        shown = str(value)[:60] if isinstance(value, (str, bytes, os.PathLike)) or value is None else ""
        raise target.error(call_name, f"it returned {type(value).__name__} {shown!r}, not a list of paths".replace(" ''", ""), rule)
    root = Path(outdir).resolve()
    out: list[Path] = []
    seen: set[Path] = set()
    for item in value:
        if not isinstance(item, (str, os.PathLike)):
            raise target.error(call_name, f"it returned {type(item).__name__} {item!r} among the paths", rule)
        path = Path(item)
        resolved = path.resolve()
        if resolved in seen:
            raise target.error(call_name, f"it reports {path} twice", rule)
        seen.add(resolved)
        if not resolved.is_relative_to(root):
            hint = ""
            if not path.is_absolute() and (Path(outdir) / path).is_file():
                hint = f" (did you mean Path(outdir) / {str(path)!r}?)"
            raise target.error(call_name, f"it reports {path}, outside the output folder {outdir}{hint}", rule)
        if not resolved.is_file():
            raise target.error(call_name, f"it reports {path}, which it did not write", rule)
        out.append(path)
    return out


def check_download(target: Target, value: Any, call_name: str = "download()") -> list[Path]:
    """Check what ``download()`` returned: a list of existing local files.

    :raises ComponentError: not a list or tuple of paths, or a path that does not exist.
    """
    rule = "download() returns a list of the local files it fetched or found"
    if not isinstance(value, (list, tuple)):
        raise target.error(call_name, f"it returned {type(value).__name__}, not a list of paths", rule)
    paths = []
    for item in value:
        if not isinstance(item, (str, os.PathLike)) or not Path(item).exists():
            raise target.error(call_name, f"it reports {item!r}, which is not an existing file", rule)
        paths.append(Path(item))
    return paths


def roll_back(folder: Path, before: set[str], exc: BaseException) -> BaseException:
    """Undo a failed export: remove every file that appeared in ``folder`` since ``before`` (a
    :func:`snapshot_files` taken before it; files that existed then are never touched).

    :return: the error to raise: for a :class:`ComponentError` that removed files, the same error
        whose message ends by naming them; otherwise ``exc`` itself.
    """
    removed = [Path(p) for p in sorted(snapshot_files(folder) - before)]
    for path in removed:
        path.unlink(missing_ok=True)
    if not removed or not isinstance(exc, ComponentError):
        return exc
    shown = ", ".join(str(p) for p in removed[:3]) + (" ..." if len(removed) > 3 else "")
    error = type(exc)(
        f"{exc} (removed what this image's export had written: {shown})", plugin=exc.plugin, component=exc.component, call=exc.call
    )
    error.__cause__ = exc.__cause__
    error.__suppress_context__ = True
    return error


def snapshot_files(folder: Path) -> set[str]:
    """The files below ``folder`` (resolved path strings; names only, no ``stat``), for rolling back
    an export that failed: the files it created are the ones not in the snapshot taken before it.
    Strings rather than ``Path`` objects: taken before every image, this must stay cheap in folders
    of many thousands of files."""
    found: set[str] = set()
    stack = [os.path.realpath(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        found.add(entry.path)
        except OSError:
            continue
    return found
