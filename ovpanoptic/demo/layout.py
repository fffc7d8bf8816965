"""The Gradio page: its components and which handler each event calls.

Imported only when a page is built (it imports gradio). Every event finds the browser session's :class:`~.state.Session` (by Gradio's session hash),
calls a plain handler of :mod:`.handlers`, and sends back the whole right-hand side from the
session (:func:`page`): an error stays in the page's error box (never a toast) until the next
action, and the outputs never get Gradio's "Error" badges.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import Cancelled, OvpanopticError, VocabularyError, WeightsError
from ..vocabulary import format_class_lists
from . import handlers
from .resources import CUSTOM_VOCABULARY, TUNABLE, DemoResources
from .render import TABLE_HEADERS, Overlay, compose, hidden_classes, legend_html, plural, segment_colors, table_rows
from .state import RunRequest, Session
from .downloads import zip_contents
from .video import MAX_DEMO_FRAMES, TRACK_HEADERS, segment_clip

__all__ = ["CSS", "JS", "build_page", "page", "page_message"]

log = logging.getLogger(__name__)

#: Keyboard shortcuts (outside text boxes): key -> the button clicked or the click mode chosen.
SHORTCUTS: tuple[tuple[str, str, str], ...] = (
    ("Delete / Backspace", "#ovp-delete", "delete the selected segment(s)"),
    ("u / Ctrl+Z", "#ovp-undo", "undo"),
    ("a", "#ovp-add", "add the proposed mask as a segment (of the Class menu's class)"),
    ("m", "#ovp-merge", "merge the selected segments"),
    ("n / p", "#ovp-next", "next / previous image of the list"),
    ("s / S", handlers.SELECT, "click mode: select one segment / select several"),
    ("+ / -", handlers.POSITIVE, "click mode: add a positive / negative point"),
    ("x", handlers.BOX, "click mode: box (2 clicks)"),
    ("b / e", handlers.BRUSH, "click mode: brush / eraser (for the selected segment)"),
    ("Enter in a number box", "", "apply the value typed"),
)
SHORTCUTS_MD = "| key | does |\n|---|---|\n" + "\n".join(f"| {key} | {does} |" for key, _, does in SHORTCUTS)

#: The page's script (run once when it loads): Enter in a number box applies it (the box loses
#: focus, which makes Gradio send its value, as a click elsewhere does); the keyboard shortcuts of
#: :data:`SHORTCUTS` outside text boxes.
JS = """
() => {
  const buttons = {"Delete": "#ovp-delete", "Backspace": "#ovp-delete", "u": "#ovp-undo", "a": "#ovp-add",
                   "m": "#ovp-merge", "n": "#ovp-next", "p": "#ovp-previous"};
  const modes = {"s": "%(select)s", "S": "%(many)s", "+": "%(positive)s", "-": "%(negative)s", "x": "%(box)s",
                 "b": "%(brush)s", "e": "%(eraser)s"};
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (e.key === "Enter" && t instanceof HTMLInputElement && t.type === "number") { t.blur(); return; }
    if (t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    if (e.altKey || e.metaKey || (e.ctrlKey && !(e.key === "z" || e.key === "Z"))) return;
    const key = e.ctrlKey ? "u" : e.key;
    if (buttons[key]) {
      const b = document.querySelector(buttons[key]);
      if (b && !b.disabled) { e.preventDefault(); b.click(); }
    } else if (modes[key]) {
      const r = document.querySelector('#ovp-mode input[value="' + modes[key] + '"]');
      if (r) { e.preventDefault(); r.click(); }
    }
  }, true);
}
""" % {
    "select": handlers.SELECT, "many": handlers.SELECT_MANY, "positive": handlers.POSITIVE, "negative": handlers.NEGATIVE,
    "box": handlers.BOX, "brush": handlers.BRUSH, "eraser": handlers.ERASER,
}

#: The page's style: a visible error box, disabled fields that look disabled, tables that scroll
#: instead of being clipped on narrow windows.
CSS = """
#ovp-error, #ovp-clip-error { border: 2px solid #d33; background: #fff1f0; color: #7a1010; padding: 6px 12px; border-radius: 6px; }
#ovp-error p, #ovp-clip-error p { margin: 4px 0; }
#ovp-status .ovp-stale { color: #9a5b00; font-weight: 600; }
textarea:disabled, input:disabled { opacity: 0.55; cursor: not-allowed; background: #eee !important; }
#ovp-table, .ovp-examples { overflow-x: auto; max-width: 100%; }
#ovp-table * { word-break: keep-all !important; overflow-wrap: normal !important; hyphens: none; }
.ovp-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 0.92em; }
.ovp-legend-item { white-space: nowrap; }
.ovp-swatch { display: inline-block; width: 13px; height: 13px; border: 1px solid #222; margin-right: 2px; vertical-align: -2px; }
#ovp-run-row { align-items: stretch; }
#ovp-status, #ovp-clip-status { min-height: 3.2em; }  /* room for a run's progress (stage, count, estimate) */
"""

_VOCABULARY_FLAGS = (
    ("--classes", "the Class names box"),
    ("--stuff", "the Stuff box"),
    ("--things", "the Things box"),
    ("--vocabulary", "the Named vocabulary menu"),
)


def page_message(exc: OvpanopticError) -> str:
    """The error's message, with CLI flag names replaced by the names of the page's fields."""
    message = str(exc)
    if isinstance(exc, WeightsError) and "local checkpoint path" in message and "--set" not in message:
        message += (
            ": restart the demo with it, e.g. --set \"classifier.clip.pretrained='/path/clip.pt'\" or "
            "--set \"proposal_generator.sam2.model='/path/sam2.pt'\" (`ovpanoptic presets interactive` lists the options)"
        )
    if isinstance(exc, VocabularyError):
        for flag, field_name in _VOCABULARY_FLAGS:
            message = message.replace(f"with {flag}", f"with {field_name}").replace(flag, field_name)
    return message


def _guard(session: Session, action: Callable[[], Any]) -> None:
    """Run a handler; its error goes into the session (shown until the next action)."""
    try:
        action()
    except Cancelled as exc:
        session.notice = str(exc)
    except OvpanopticError as exc:
        log.info("demo request refused: %s", exc)
        session.error = page_message(exc)
    except Exception as exc:  # noqa: BLE001 - the page gets a message, the log the traceback
        log.exception("demo request failed")
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        session.error = (
            f"Unexpected {type(exc).__name__}{f': {detail}' if detail else ''}. This is a bug in ovpanoptic or in "
            "one of its plugins; the traceback is in the server log. If a plugin is at fault, restart the demo "
            "with --disable-plugin NAME (or choose another preset)."
        )


def text(value: object) -> str:
    """User-given text (class names, file names, messages quoting them) for a Markdown output:
    HTML and Markdown characters escaped, so it shows as typed and never as markup."""
    escaped = html.escape(str(value), quote=False)
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", escaped)  # the characters that make markup mid-line


def _summary(session: Session) -> str:
    parts = []
    if session.stale:
        parts.append(f"<span class='ovp-stale'>Not segmented yet: {text(session.stale)}.</span>")
    elif session.result is not None and session.image is not None:
        result = session.result
        things = sum(1 for s in result.segments if s.isthing)
        vocab = result.vocabulary
        steps = len(session.history)
        undo = f" · {plural(steps, 'step')} to undo" if steps else ""
        parts.append(
            f"**{plural(len(result.segments), 'segment')}** ({plural(things, 'thing')}, {len(result.segments) - things} stuff) · "
            f"{result.image_size[1]} x {result.image_size[0]} px · {text(session.image.name)} · "
            f"{plural(len(vocab), 'class', 'classes')}{f' ({text(vocab.name)})' if vocab.name != 'custom' else ''}{undo}"
        )
        if not result.segments and session.explanation:  # why, and what to move, right under the count
            parts.append("\n".join(f"- {line}" for line in session.explanation))
    if session.notice:
        parts.append(text(session.notice))
    if session.selected and session.result is not None and not session.stale:
        labels = session.labels()
        acts = "Relabel and Delete act on it" if len(session.selected) == 1 else "Relabel, Delete and Merge act on these"
        parts.append(
            "**Selected:** " + ", ".join(f"{text(labels.get(s, '?'))} (id {s})" for s in session.selected) + f" · {acts}"
        )
    return "\n\n".join(parts)


def _selection_buttons(session: Session) -> tuple[Any, Any, Any]:
    """Relabel, Delete and Merge, labelled with what they act on (disabled without a selection)."""
    result = None if session.stale else session.result
    ids = [s for s in session.selected] if result is not None else []
    labels = session.labels() if result is not None else {}
    if len(ids) == 1:
        what = labels.get(ids[0], "selected")
    elif ids:
        what = plural(len(ids), "segment")
    else:
        what = "selected"
    merge = f"Merge {plural(len(ids), 'segment')} (into {labels.get(ids[0], '?')})" if len(ids) >= 2 else "Merge selected"
    return (
        gr.update(value=f"Relabel {what}", interactive=bool(ids)),
        gr.update(value=f"Delete {what}", interactive=bool(ids)),
        gr.update(value=merge, interactive=len(ids) >= 2),
    )


def _timings(session: Session) -> str:
    if session.result is None or session.stale:
        return ""
    rows = [
        ("encode class names", "encode names"),
        ("proposals", "proposals"),
        ("image features", "features"),
        ("classification", "classify"),
        ("fusion", "fuse"),
        ("resize to the image", "resize"),
        ("last prompt", "prompt"),
    ]
    lines = ["**The model's run** (before corrections):", ""] + [f"- {line}" for line in session.explanation]
    corrections = [h for h in session.history if h.what != "threshold change"]
    if corrections:
        lines.append(f"- then {plural(len(corrections), 'correction')}: {len(session.result.segments)} segments now")
    lines += ["", "| stage | seconds |", "|---|---:|"]
    for label, key in rows:
        if key in ("proposals", "features") and session.timings.get(key, 1.0) == 0.0:
            lines.append(f"| {label} | cached |")
        elif key in session.timings:
            lines.append(f"| {label} | {session.timings[key]:.3f} |")
    lines.append("")
    if session.cached:
        lines.append("Same image as before: proposals and image features came from the cache; only classification and fusion ran.")
    else:
        lines.append("Change the class names or the fusion thresholds and the answer comes from the cache.")
    return "\n".join(lines)


def page(app: DemoResources, session: Session) -> tuple[Any, ...]:
    """The outputs of every event, from the session: error box, status, image, classes shown,
    class menu, table, timings, and the Relabel, Delete and Merge buttons."""
    error = gr.update(value=f"**Cannot do that.** {text(session.error)}" if session.error else "", visible=bool(session.error))
    view = None
    shown_update = gr.update(choices=[], value=[])
    class_update = gr.update()
    rows: list[list[Any]] = []
    legend = ""
    if session.image is not None:
        display = session.image.display
        result = None if session.stale else session.result
        if result is not None:
            labels = session.labels()
            present = list(dict.fromkeys(result.category_of(s).name for s in result.segments))
            shown = [c for c in (session.shown if session.shown is not None else present) if c in present]
            overlay = Overlay(opacity=session.opacity, hidden=hidden_classes(result, shown), selected=tuple(session.selected))
            colors = segment_colors(result, labels)
            legend = legend_html(result, overlay.hidden, colors)
            h, w = result.image_size
            view = compose(
                display, result, labels, colors, overlay, candidate=session.candidate,
                points=session.points, box=session.box,
                scale=(display.shape[1] / w, display.shape[0] / h),
            )
            shown_update = gr.update(choices=present, value=shown)
            class_update = gr.update(choices=[c.name for c in result.vocabulary])
            rows = table_rows(result, labels, session.selected)
        else:
            view = display
    return (error, _summary(session), view, shown_update, class_update, rows, _timings(session), *_selection_buttons(session), legend)


def build_page(app: DemoResources) -> Any:
    """The Blocks of the page (loads no model); the queue is on."""
    initial = {(c.kind, c.option): c for c in app.tuning_controls()}
    rows = app.example_rows()

    def session_of(request: gr.Request | None) -> Session:
        return app.session_of_tab(getattr(request, "session_hash", None))

    with gr.Blocks(title="ovpanoptic demo", analytics_enabled=False, delete_cache=(3600, 7200)) as demo:
        gr.Markdown(
            "# ovpanoptic: open-vocabulary panoptic segmentation\n"
            "Upload an image, type the class names to look for, and every pixel gets a class and every object "
            "its own id. Then correct it: click a segment to select it, relabel, delete or merge; draw a point or "
            "a box to add a segment with SAM 2, or brush and erase pixels; download the labels (COCO panoptic, COCO "
            "instances, Label Studio, CVAT, CSV). Several images, a reload and existing labels: see the accordion under "
            "the image; keyboard shortcuts: under the table. "
            "The first run on an image is slow on a CPU; re-queries and threshold changes answer from the cache."
        )
        with gr.Tabs():
            with gr.Tab("Image", id="image", elem_id="ovp-image-tab"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=320):
                        image = gr.Image(
                            type="filepath", image_mode=None, label="Image", sources=["upload", "clipboard"], elem_id="ovp-image",
                        )
                        with gr.Accordion("Several images, existing labels", open=False, elem_id="ovp-more"):
                            images = gr.File(
                                file_count="multiple", file_types=["image"], elem_id="ovp-images",
                                label="Images to walk (select several, or all of a folder's)",
                            )
                            with gr.Row():
                                previous = gr.Button("← Previous", size="sm", elem_id="ovp-previous")
                                following = gr.Button("Next →", size="sm", elem_id="ovp-next")
                            labels_in = gr.File(
                                file_count="multiple", elem_id="ovp-labels-in", file_types=[".zip", ".json", ".png"],
                                label="Continue from labels of this image: the demo's zip, panoptic.json + its PNG, or a Label Studio JSON",
                            )
                        vocabulary = gr.Dropdown(
                            choices=app.vocabulary_choices(), value=CUSTOM_VOCABULARY, label="Named vocabulary",
                            elem_id="ovp-vocabulary", info=app.vocabulary_info(CUSTOM_VOCABULARY),
                        )
                        classes = gr.Textbox(
                            label="Class names", lines=2, max_lines=10, elem_id="ovp-classes", placeholder="person, car, tv|television",
                            info="Comma-separated; '|' separates synonyms. Names known as stuff (road, sky, floor, ...) are stuff, "
                            "the rest things (one segment per object).",
                        )
                        stuff = gr.Textbox(label="Stuff (optional)", elem_id="ovp-stuff", placeholder="road, sky", info="Amorphous regions: one segment per class.")
                        things = gr.Textbox(
                            label="Things (optional)", elem_id="ovp-things", placeholder="floor",
                            info="Kept as things (one segment per object) even when the name sounds like stuff.",
                        )
                        preset = gr.Dropdown(
                            choices=app.preset_choices(), value=app.initial_preset, label="Preset",
                            elem_id="ovp-preset", info="Components and their settings (configs/).",
                        )
                        with gr.Accordion("Thresholds", open=False, elem_id="ovp-thresholds"):
                            gr.Markdown("Fusion thresholds re-fuse the current result at once (from the cache); proposal settings apply at the next Segment.")
                            # One control per known option; those the preset's components lack are hidden
                            # (and shown again when another preset has them).
                            sliders = [
                                gr.Slider(
                                    lo, hi, step=step, label=f"{label} ({option})", elem_id=f"ovp-tune-{option.replace('_', '-')}",
                                    value=initial[(kind, option)].value if (kind, option) in initial else lo,
                                    visible=(kind, option) in initial,
                                )
                                for (kind, option), (label, lo, hi, step) in TUNABLE.items()
                            ]
                        if rows:
                            gr.Examples(
                                examples=rows, inputs=[image, classes, stuff, things, vocabulary],
                                example_labels=[f"{r[0].rsplit('/', 1)[-1]}: {r[1]}; {r[2]}" for r in rows],
                                label="Examples (made by the project, CC0)", elem_id="ovp-examples",
                            )
                    with gr.Column(scale=3, min_width=360):
                        # The run controls and the status by the result: above the fold at 1400x1000, the
                        # progress of a run and the reason for an empty result next to what they concern.
                        with gr.Row(elem_id="ovp-run-row"):
                            run = gr.Button("Segment", variant="primary", elem_id="ovp-run", scale=3)
                            stop = gr.Button("Cancel", variant="stop", elem_id="ovp-cancel", interactive=False, size="sm", scale=1)
                        error = gr.Markdown(visible=False, elem_id="ovp-error")
                        position = gr.Markdown(elem_id="ovp-position")
                        status = gr.Markdown(elem_id="ovp-status")
                        # The image below them: a message appearing never moves what the user clicks on.
                        view = gr.Image(
                            label="Panoptic segments", type="numpy", format="jpeg", interactive=False, elem_id="ovp-view",
                            buttons=["fullscreen"], show_label=False,  # no label chip over the image's top edge
                        )
                        with gr.Row():
                            mode = gr.Radio(
                                [handlers.SELECT, handlers.SELECT_MANY, handlers.POSITIVE, handlers.NEGATIVE, handlers.BOX,
                                 handlers.BRUSH, handlers.ERASER],
                                value=handlers.SELECT, label="A click on the image will", elem_id="ovp-mode",
                            )
                            radius = gr.Slider(
                                1, 64, value=handlers.BRUSH_RADIUS, step=1, label="Brush / eraser radius (image pixels)",
                                elem_id="ovp-radius",
                            )
                            opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Opacity", elem_id="ovp-opacity")
                        with gr.Row():
                            klass = gr.Dropdown(
                                choices=[], value=None, allow_custom_value=True, label="Class",
                                info="Pick one, or type a new name.", elem_id="ovp-class",
                            )
                            kind = gr.Radio(
                                list(handlers.CLASS_KINDS), value="auto", label="A new name is", elem_id="ovp-kind",
                                info="auto: stuff if it sounds like stuff (sky, floor), else a thing",
                            )
                            add = gr.Button("Add segment", elem_id="ovp-add")
                            relabel = gr.Button("Relabel selected", elem_id="ovp-relabel", interactive=False)
                        with gr.Row():
                            delete = gr.Button("Delete selected", elem_id="ovp-delete", interactive=False)
                            merge = gr.Button("Merge selected", elem_id="ovp-merge", interactive=False)
                            undo = gr.Button("Undo", elem_id="ovp-undo")
                        legend = gr.HTML(elem_id="ovp-legend")
                        shown = gr.CheckboxGroup(choices=[], label="Classes shown", elem_id="ovp-shown")
                        table = gr.Dataframe(
                            headers=list(TABLE_HEADERS), datatype=["str", "number", "str", "str", "str", "number", "str"],
                            label="Segments (click a row to select it; ✓ marks the selection)", interactive=False, elem_id="ovp-table",
                            # Widths in pixels that fit the words: the table scrolls sideways on a phone
                            # (percentages of a phone's width broke words letter by letter).
                            column_widths=["34px", "46px", "132px", "112px", "64px", "60px", "86px"], wrap=True,
                        )
                        timings = gr.Markdown(elem_id="ovp-timings")
                        with gr.Accordion("Keyboard shortcuts", open=False, elem_id="ovp-shortcuts"):
                            gr.Markdown(SHORTCUTS_MD)
                        download = gr.File(
                            label="Download (zip): image, COCO panoptic, COCO instances, Label Studio, CVAT, overlay, segment table",
                            interactive=False, elem_id="ovp-download",
                        )
                        contents = gr.Markdown(elem_id="ovp-download-contents")

            with gr.Tab("Video", id="video", elem_id="ovp-video-tab"):
                gr.Markdown(
                    "Segment a short clip: keyframes go through the image pipeline (the preset and the class boxes "
                    "of this tab), the tracker carries their objects between keyframes, and every object keeps its "
                    f"id from frame to frame. At most {MAX_DEMO_FRAMES} frames here; `ovpanoptic segment-video` has no limit."
                )
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=320):
                        clip = gr.Video(label="Clip", sources=["upload"], elem_id="ovp-clip")
                        clip_classes = gr.Textbox(label="Class names", lines=2, elem_id="ovp-clip-classes", placeholder="person, forklift, pallet")
                        clip_stuff = gr.Textbox(label="Stuff (optional)", elem_id="ovp-clip-stuff", placeholder="floor, shelf")
                        with gr.Row():
                            clip_k = gr.Slider(1, 30, value=10, step=1, label="Keyframe every K frames", elem_id="ovp-clip-k")
                            clip_frames = gr.Slider(1, MAX_DEMO_FRAMES, value=60, step=1, label="Frames (at most)", elem_id="ovp-clip-frames")
                        clip_tracker = gr.Dropdown(
                            choices=app.tracker_choices(), value=app.tracker_choices()[0] if app.tracker_choices() else None,
                            label="Tracker", elem_id="ovp-clip-tracker",
                            info="sam2-video: SAM 2's video predictor (about 1.3 s per object and frame on a 2-core CPU); "
                            "hold: no model (use K = 1).",
                        )
                        with gr.Row():
                            clip_run = gr.Button("Segment video", variant="primary", elem_id="ovp-clip-run", scale=3)
                            clip_stop = gr.Button("Cancel", variant="stop", elem_id="ovp-clip-cancel", interactive=False, size="sm", scale=1)
                    with gr.Column(scale=3, min_width=360):
                        clip_view = gr.Video(label="Tracked segments", interactive=False, elem_id="ovp-clip-view")
                        clip_error = gr.Markdown(visible=False, elem_id="ovp-clip-error")
                        clip_status = gr.Markdown(elem_id="ovp-clip-status")
                        clip_table = gr.Dataframe(
                            headers=list(TRACK_HEADERS), label="Tracks", interactive=False, elem_id="ovp-clip-table", wrap=True,
                        )
                        clip_download = gr.File(
                            label="Download: per-frame COCO-panoptic PNGs + JSON, tracks, overlay video (zip)",
                            interactive=False, elem_id="ovp-clip-download",
                        )

        outputs = [error, status, view, shown, klass, table, timings, relabel, delete, merge, legend]
        # A set of inputs: the handler gets one dict {component: value} (one slider per known option).
        inputs = {image, classes, stuff, things, vocabulary, preset, *sliders}

        def request_of(data: dict[Any, Any]) -> RunRequest:
            preset_v = data.get(preset) or ""
            values = {key: data.get(slider) for key, slider in zip(TUNABLE, sliders)}
            return RunRequest(
                data.get(classes) or "", data.get(stuff) or "", data.get(things) or "",
                data.get(vocabulary) or "", preset_v, app.tuning_overrides(preset_v, values),
            )

        def report(progress: Any) -> Callable[[str, int, int], None]:
            return lambda m, d, t: progress((d, t) if t else None, desc=m)

        def slider_values(s: Session) -> list[Any]:
            """The sliders at the values of the session's request (after an undo of a threshold change)."""
            if s.request is None:
                return [gr.update() for _ in sliders]
            try:
                current = {(c.kind, c.option): c for c in app.tuning_controls(s.request.preset)}
            except OvpanopticError:
                return [gr.update() for _ in sliders]
            chosen = {t.split("=", 1)[0]: t.split("=", 1)[1] for t in s.request.tuning}
            return [
                gr.update(value=float(chosen.get(current[key].key, current[key].value))) if key in current else gr.update()
                for key in TUNABLE
            ]

        def on_request(request: gr.Request) -> Any:
            handlers.request_run(session_of(request))
            return gr.update(interactive=True)  # Cancel: active while the run waits or runs

        idle = gr.update(interactive=False)  # Cancel once the run is over

        def on_segment(data: dict[Any, Any], request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
            s = session_of(request)

            def act() -> None:
                handlers.image_changed(app, s, data.get(image))
                handlers.segment(app, s, request_of(data), report(progress), fresh=False)

            try:
                _guard(s, act)
            finally:
                s.running = False
            return (*page(app, s), idle)

        def download_of(s: Session) -> str | None:
            """The session's zip (written now if needed); a failure goes into the error box."""
            try:
                with app.lock:  # the zip's exporters run on the shared pipeline
                    path = handlers.download(app, s)
            except OvpanopticError as exc:
                s.error = page_message(exc)
                return None
            except OSError as exc:  # the disk is full, or the app is shutting down
                log.warning("demo download not written: %s", exc)
                s.error = f"The download could not be written ({exc}); free some disk space and try again."
                return None
            return str(path) if path is not None else None

        def on_download(request: gr.Request) -> tuple[Any, Any, Any]:
            s = session_of(request)
            path = download_of(s)
            return path, page(app, s)[0], zip_contents(Path(path)) if path else ""

        def on_retune(data: dict[Any, Any], request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
            s = session_of(request)
            tuning, s.typed_applied, applied = request_of(data).tuning, None, s.typed_applied
            if applied is not None and set(tuning) == set(applied):
                # The box's own release of a value a correction already applied (it can reach the
                # queue after the click that made the box lose focus): the page has moved on.
                return page(app, s)
            _guard(s, lambda: handlers.retune(app, s, tuning, report(progress)))
            return page(app, s)

        def on_image(image_v: Any, request: gr.Request) -> tuple[Any, ...]:
            s = session_of(request)
            if image_v is None and s.refused_upload:
                # The page clearing a refused upload: keep the message that says why.
                s.refused_upload = False
                return (*page(app, s), gr.update(), None, "")
            _guard(s, lambda: handlers.image_changed(app, s, image_v))
            s.refused_upload = bool(s.error) and s.image is None and image_v is not None
            if s.refused_upload or s.stale or s.result is None:
                return (*page(app, s), gr.update(value=None) if s.refused_upload else gr.update(), None, "")
            # The image of the result is back: so is its download (written already, or now).
            path = download_of(s)
            return (*page(app, s), gr.update(), path, zip_contents(Path(path)) if path else "")

        # The corrections: each gets the threshold controls' values, so a value typed and not yet applied
        # (the box still focused when the button was pressed) is applied first; all of them run in the
        # model's queue, one at a time in the order they were sent, so the box's own "release" (sent as
        # it loses focus, before the click) is never overtaken. They send the sliders back (an Undo of a
        # threshold change moves them).
        edit_inputs = {mode, klass, kind, radius, *sliders}
        edit_outputs = [*outputs, *sliders]

        def apply_typed(s: Session, data: dict[Any, Any]) -> None:
            if s.request is None or s.result is None or s.stale:
                return
            values = {key: data.get(slider) for key, slider in zip(TUNABLE, sliders)}
            tuning = app.tuning_overrides(s.request.preset, values)
            if set(tuning) != set(s.request.tuning):
                handlers.retune(app, s, tuning)
                s.typed_applied = tuning

        def edit(fn: Callable[[Session, dict[Any, Any]], Any]) -> Callable[..., tuple[Any, ...]]:
            def event(data: dict[Any, Any], request: gr.Request) -> tuple[Any, ...]:
                s = session_of(request)

                def act() -> None:
                    apply_typed(s, data)
                    fn(s, data)

                _guard(s, act)
                return (*page(app, s), *slider_values(s))

            return event

        def on_click(data: dict[Any, Any], evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
            def act(s: Session, data: dict[Any, Any]) -> None:
                x, y = evt.index[0], evt.index[1]
                size = s.image.display.shape[:2] if s.image is not None else (1, 1)
                handlers.click(
                    app, s, float(x), float(y), data.get(mode) or handlers.SELECT, size, radius=data.get(radius) or handlers.BRUSH_RADIUS
                )

            return edit(act)(data, request)

        def on_row(data: dict[Any, Any], evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
            return edit(lambda s, d: handlers.select(s, int(evt.row_value[1]), several=d.get(mode) == handlers.SELECT_MANY))(data, request)

        def with_class(fn: Callable[[Session, str, str], Any]) -> Callable[..., tuple[Any, ...]]:
            return edit(lambda s, d: fn(s, d.get(klass) or "", d.get(kind) or "auto"))

        def on_view_options(opacity_v: float, shown_v: list[str], request: gr.Request) -> tuple[Any, ...]:
            s = session_of(request)
            try:
                s.opacity = min(1.0, max(0.0, float(opacity_v)))
            except (TypeError, ValueError):
                pass
            s.shown = tuple(str(v) for v in (shown_v or ()))
            return page(app, s)

        def on_vocabulary(name: str) -> tuple[Any, ...]:
            if not name or name == CUSTOM_VOCABULARY or name not in app.registry.vocabularies:
                return gr.update(), gr.update(), gr.update(), gr.update(info=app.vocabulary_info(CUSTOM_VOCABULARY))
            lists = format_class_lists(app.registry.vocabulary(name))
            return lists.classes, lists.stuff, lists.things, gr.update(info=app.vocabulary_info(name))

        def on_preset(name: str) -> list[Any]:
            try:
                present = {(c.kind, c.option): c for c in app.tuning_controls(name)}
            except OvpanopticError:  # reported by the next Segment
                return [gr.update() for _ in sliders]
            return [
                gr.update(value=present[key].value, visible=True) if key in present else gr.update(visible=False)
                for key in TUNABLE
            ]

        def on_cancel(request: gr.Request) -> tuple[Any, ...]:
            s = session_of(request)
            handlers.cancel(s)
            return (gr.update(), _summary(s))

        workbench = gr.BrowserState("", storage_key="ovpanoptic-workbench")
        walk_outputs = [*outputs, image, position]

        def shown_image(s: Session) -> Any:
            return str(s.image.path) if s.image is not None and s.image.path is not None else gr.update()

        def on_images(files: Any, request: gr.Request) -> tuple[Any, ...]:
            s = session_of(request)
            _guard(s, lambda: handlers.set_images(app, s, [f["path"] if isinstance(f, dict) else f for f in files or ()]))
            return (*page(app, s), shown_image(s), handlers.position(s))

        def walker(delta: int) -> Callable[..., tuple[Any, ...]]:
            def event(request: gr.Request) -> tuple[Any, ...]:
                s = session_of(request)
                _guard(s, lambda: handlers.step(app, s, delta))
                return (*page(app, s), shown_image(s), handlers.position(s))

            return event

        def on_labels(files: Any, request: gr.Request) -> tuple[Any, ...]:
            s = session_of(request)
            _guard(s, lambda: handlers.load_labels(app, s, list(files or ())))
            return (*page(app, s), gr.update(), handlers.position(s))

        def on_load(key: str, request: gr.Request) -> tuple[Any, ...]:
            """A page (re)opened: bind it to its browser's workbench and show what is there."""
            key = key if isinstance(key, str) and re.fullmatch(r"[0-9a-f]{32}", key) else secrets.token_hex(16)
            app.bind(getattr(request, "session_hash", None), key)
            s = app.session(key)
            path = download_of(s) if s.result is not None and not s.stale else None
            return (*page(app, s), shown_image(s), handlers.position(s), path, zip_contents(Path(path)) if path else "", key)

        def on_unload(request: gr.Request) -> None:
            app.end_session(getattr(request, "session_hash", None))

        clip_outputs = [clip_error, clip_status, clip_view, clip_table, clip_download]

        def clip_page(s: Session) -> tuple[Any, ...]:
            error_md = gr.update(value=f"**Cannot do that.** {text(s.video_error)}" if s.video_error else "", visible=bool(s.video_error))
            status_parts = [s.video.summary] if s.video is not None else []
            if s.video_notice:
                status_parts.append(text(s.video_notice))
            if s.video is None:
                return (error_md, "\n\n".join(status_parts), None, [], None)
            return (error_md, "\n\n".join(status_parts), str(s.video.overlay), [list(r) for r in s.video.rows], str(s.video.download))

        def on_clip(video: Any, classes_v: str, stuff_v: str, k: float, frames_v: float, tracker_v: str, preset_v: str,
                    request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
            s = session_of(request)

            def act() -> None:
                segment_clip(
                    app, s, video, RunRequest(classes_v or "", stuff_v or "", "", "", preset_v or ""),
                    keyframe_every=int(k), max_frames=int(frames_v), tracker=tracker_v or "", progress=report(progress), fresh=False,
                )

            errors_before = s.error, s.notice
            try:
                _guard(s, act)
            finally:
                s.running = False
            # _guard puts errors and notices into the image tab's fields: move them to the video tab's.
            if (s.error, s.notice) != errors_before:
                s.video_error, s.video_notice = s.error if s.error != errors_before[0] else "", s.notice if s.notice != errors_before[1] else ""
                s.error, s.notice = errors_before
            return (*clip_page(s), idle)

        def on_clip_cancel(request: gr.Request) -> tuple[Any, ...]:
            s = session_of(request)
            handlers.cancel(s)
            s.video_notice, s.notice = s.notice, ""
            return clip_page(s)

        model = {"concurrency_limit": 1, "concurrency_id": "model"}
        private = {"api_visibility": "private"}
        # preprocess=False: the handlers get the upload's payload unread (path and original name), so
        # a non-image gets the handler's message instead of Gradio's generic error.
        raw = {"preprocess": False}
        # A Segment first marks the run requested (not queued: at once), so a Cancel pressed while
        # it waits in the queue stops it too; then the run, then the download.
        # The progress of a run shows in the status line only (not over every output).
        for trigger in (run.click, classes.submit, stuff.submit, things.submit):
            trigger(on_request, None, stop, queue=False, **private).then(
                on_segment, inputs, [*outputs, stop], **raw, **model, **private, show_progress_on=[status]
            ).then(on_download, None, [download, error, contents], **private)
        for slider in sliders:
            slider.release(on_retune, inputs, outputs, **private, **model, show_progress_on=[status]).then(on_download, None, [download, error, contents], **private)
        image.change(on_image, [image], [*outputs, image, download, contents], queue=False, **raw, **private)
        view.select(on_click, edit_inputs, edit_outputs, **private, **model)
        table.select(on_row, edit_inputs, edit_outputs, **private, **model)
        for button, fn in ((delete, handlers.delete), (merge, handlers.merge), (undo, handlers.undo)):
            button.click(edit(lambda s, d, fn=fn: fn(app, s)), edit_inputs, edit_outputs, **private, **model).then(
                on_download, None, [download, error, contents], **private
            )
        add.click(with_class(lambda s, c, k: handlers.accept(app, s, c, k)), edit_inputs, edit_outputs, **private, **model).then(
            on_download, None, [download, error, contents], **private
        )
        relabel.click(with_class(lambda s, c, k: handlers.relabel(app, s, c, k)), edit_inputs, edit_outputs, **private, **model).then(
            on_download, None, [download, error, contents], **private
        )
        opacity.release(on_view_options, [opacity, shown], outputs, **private)
        shown.input(on_view_options, [opacity, shown], outputs, **private)
        vocabulary.input(on_vocabulary, vocabulary, [classes, stuff, things, vocabulary], queue=False, **private)
        stop.click(on_cancel, None, [error, status], queue=False, **private)
        clip_run.click(on_request, None, clip_stop, queue=False, **private).then(
            on_clip, [clip, clip_classes, clip_stuff, clip_k, clip_frames, clip_tracker, preset], [*clip_outputs, clip_stop],
            **model, **private, show_progress_on=[clip_status],
        )
        clip_stop.click(on_clip_cancel, None, clip_outputs, queue=False, **private)
        preset.input(on_preset, preset, sliders, queue=False, **private)
        images.upload(on_images, images, walk_outputs, **private, **model).then(on_download, None, [download, error, contents], **private)
        previous.click(walker(-1), None, walk_outputs, **private, **model).then(on_download, None, [download, error, contents], **private)
        following.click(walker(+1), None, walk_outputs, **private, **model).then(on_download, None, [download, error, contents], **private)
        labels_in.upload(on_labels, labels_in, walk_outputs, **private, **model).then(on_download, None, [download, error, contents], **private)
        demo.load(on_load, workbench, [*walk_outputs, download, contents, workbench], queue=False, **private)
        demo.unload(on_unload)
    demo.queue(default_concurrency_limit=4)
    return demo
