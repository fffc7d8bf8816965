"""How the categories of two sets pair (by id or by name) and how a prediction's segments are
renumbered to the ground truth's category ids: shared by the PQ evaluator, the agreement report, the
QA report, the video metrics and the dataset evaluation engine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..formats.common import CategoryInfo, EvaluationError, as_int, category_key, loose_key

__all__ = ["pair_categories", "prediction_categories", "remap_segments"]


def prediction_categories(pred_data: Mapping[str, Any], pred_path: Path) -> dict[int, str] | None:
    """``{id: name}`` of a prediction JSON's ``categories`` list, or ``None`` when it has none."""
    raw = pred_data.get("categories")
    if not isinstance(raw, list):
        return None
    pred: dict[int, str] = {}
    for position, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or "id" not in entry:
            raise EvaluationError(f"{pred_path}: categories[{position}] must be a dict with 'id' and 'name'")
        pred[as_int(entry["id"], "'id'", f"{pred_path}: categories[{position}]")] = str(entry.get("name", entry["id"]))
    return pred


def pair_categories(
    gt: Mapping[int, CategoryInfo], pred: Mapping[int, str] | None, pred_source: str | Path, mode: str
) -> tuple[dict[int, int | None], list[str]]:
    """Map prediction category ids to ground-truth ids, by ``mode`` (``"id"`` or ``"name"``).

    :param pred: the prediction's ``{id: name}`` table, or ``None`` when it has none.
    :return: ``{pred id: gt id or None (ignored)}`` and notes for the report.
    :raises EvaluationError: ``"id"`` and a category whose name differs from the ground truth's
        under the same id (the predictions were made with another vocabulary); ``"name"`` and a
        prediction without a category table.
    """
    if pred is None:
        if mode == "name":
            raise EvaluationError(f"{pred_source} has no 'categories' list, so its categories cannot be matched by name")
        return {cid: cid for cid in gt}, []
    notes: list[str] = []
    if mode == "id":
        clashes = [(cid, name) for cid, name in pred.items() if cid in gt and category_key(gt[cid].name) != category_key(name)]
        if clashes:
            cid, name = clashes[0]
            raise EvaluationError(
                f"prediction category {cid} is {name!r} but ground-truth category {cid} is {gt[cid].name!r} "
                f"({len(clashes)} of {len(pred)} prediction categories differ by name): the predictions were made with "
                "another vocabulary. Evaluate with --match-categories name (match_categories='name') to pair categories "
                "by name, or predict with the ground truth's vocabulary"
            )
        mapping: dict[int, int | None] = {cid: cid for cid in gt}
        extra = sorted(cid for cid in pred if cid not in gt)
        if extra:
            notes.append(f"prediction categories not in the ground truth: {', '.join(f'{pred[c]!r} ({c})' for c in extra[:10])}")
        return mapping, notes
    exact: dict[str, int] = {}
    loose: dict[str, int] = {}
    for cid, info in gt.items():
        exact.setdefault(category_key(info.name), cid)
        loose.setdefault(loose_key(info.name), cid)
    mapping = {cid: exact.get(category_key(name), loose.get(loose_key(name))) for cid, name in pred.items()}
    unmatched_pred = [f"{pred[c]!r}" for c, g in mapping.items() if g is None]
    matched_gt = {g for g in mapping.values() if g is not None}
    unmatched_gt = [f"{gt[c].name!r}" for c in gt if c not in matched_gt]
    pairs = [f"{pred[c]!r} -> {gt[g].name!r}" for c, g in mapping.items() if g is not None and category_key(pred[c]) != category_key(gt[g].name)]
    notes.append(
        f"categories matched by name: {len(matched_gt)} of {len(gt)} ground-truth categories"
        + (f" ({', '.join(pairs[:10])})" if pairs else "")
    )
    if unmatched_pred:
        notes.append(f"prediction categories without a ground-truth namesake (their segments are ignored): {', '.join(unmatched_pred[:20])}")
    if unmatched_gt:
        shown = ", ".join(unmatched_gt[:20]) + (f" and {len(unmatched_gt) - 20} more" if len(unmatched_gt) > 20 else "")
        notes.append(f"ground-truth categories no prediction category is named after (never predicted): {shown}")
    if not matched_gt:
        raise EvaluationError(
            f"no prediction category of {pred_source} has the name of a ground-truth category: nothing can be evaluated"
        )
    return mapping, notes


def remap_segments(segments: Any, mapping: Mapping[int, int | None]) -> tuple[Any, set[int]]:
    """``segments_info`` with prediction category ids mapped to ground-truth ids, and the segment ids
    of unmatched categories, which are dropped (the caller paints their pixels void)."""
    if not isinstance(segments, list):
        return segments, set()
    out = []
    dropped: set[int] = set()
    for segment in segments:
        if isinstance(segment, Mapping) and "category_id" in segment and isinstance(segment["category_id"], int):
            target = mapping.get(segment["category_id"], segment["category_id"])
            if target is None:
                if isinstance(segment.get("id"), int):
                    dropped.add(segment["id"])
                continue
            segment = {**segment, "category_id": target}
        out.append(segment)
    return out, dropped
