"""Components with run-time faults. Each behaves like ovpanoptic.testing's deterministic components
on ordinary images, and breaks its contract on "poisoned" images: those 66 pixels wide."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ovpanoptic import ClassScores, PanopticResult, ProposalSet, Vocabulary, hookimpl
from ovpanoptic.atomic import atomic_write_text
from ovpanoptic.testing import CyclingClassifier, PaintFuser, SummaryJSONExporter, TilesGenerator

if TYPE_CHECKING:
    from decimal import Decimal

POISON_WIDTH = 66


def poisoned(width: int) -> bool:
    return width == POISON_WIDTH


class _Generator(TilesGenerator):
    def __init__(self, config=None, context=None):
        super().__init__()

    def generate(self, image, *, progress=None):
        good = super().generate(image, progress=progress)
        if not poisoned(image.shape[1]):
            return good
        return self.fault(image, good)


class Uint8Masks(_Generator):
    def fault(self, image, good):
        return ProposalSet(good.masks.astype(np.uint8), good.boxes_xyxy, good.scores)


class NanScores(_Generator):
    def fault(self, image, good):
        return ProposalSet(good.masks, good.boxes_xyxy, np.full(len(good), np.nan, np.float32))


class HalfSizeMasks(_Generator):
    def fault(self, image, good):
        return ProposalSet.from_masks(good.masks[:, ::2, ::2])


class NotProposals(_Generator):
    def fault(self, image, good):
        return {"masks": good.masks}


class InPlace(_Generator):
    def fault(self, image, good):
        image -= image.min()  # normalises the image in place
        return good


class LooseBoxes(_Generator):
    def fault(self, image, good):
        return ProposalSet(good.masks, good.boxes_xyxy + np.float32(5), good.scores)


class NoProgress:
    """generate() without the progress keyword."""

    def __init__(self, config=None, context=None):
        pass

    def generate(self, image):
        return TilesGenerator().generate(image)


@dataclass(frozen=True)
class TypedConfig:
    """A config module with postponed annotations and a TYPE_CHECKING-only type (must work)."""

    rows: int = 2
    cols: int = 2
    budget: Decimal | None = None


class TypedTiles(TilesGenerator):
    def __init__(self, config: TypedConfig, context=None):
        super().__init__()
        self.config = config


class _Classifier(CyclingClassifier):
    def __init__(self, config=None, context=None):
        super().__init__()

    def prepare(self, image, proposals):
        return (super().prepare(image, proposals), poisoned(image.shape[1]))

    def score(self, prepared, vocabulary):
        n, poison = prepared
        good = super().score(n, vocabulary)
        return self.fault(good, vocabulary) if poison else good


class NanProbs(_Classifier):
    def fault(self, good, vocabulary):
        return ClassScores(good.logits, np.full_like(good.probs, np.nan), vocabulary.ids)


class Float64Probs(_Classifier):
    def fault(self, good, vocabulary):
        return ClassScores(good.logits, good.probs.astype(np.float64), vocabulary.ids)


class SumAboveOne(_Classifier):
    def fault(self, good, vocabulary):
        return ClassScores(good.logits, np.full_like(good.probs, 0.9), vocabulary.ids)


class NanLogits(_Classifier):
    def fault(self, good, vocabulary):
        return ClassScores(np.full_like(good.logits, np.nan), good.probs, vocabulary.ids)


class WrongColumns(_Classifier):
    def fault(self, good, vocabulary):
        return ClassScores(good.logits[:, ::-1].copy(), good.probs[:, ::-1].copy(), vocabulary.ids[::-1])


class _Fuser(PaintFuser):
    def __init__(self, config=None, context=None):
        super().__init__()

    def fuse(self, proposals, scores, vocabulary):
        good = super().fuse(proposals, scores, vocabulary)
        return self.fault(good, vocabulary) if poisoned(proposals.image_size[1]) else good


class DuplicateIds(_Fuser):
    def fault(self, good, vocabulary):
        return PanopticResult(good.panoptic_map, good.segments + good.segments[:1], vocabulary)


class StuffTwice(_Fuser):
    def fault(self, good, vocabulary):
        stuff = [c for c in vocabulary.categories if not c.isthing][0]
        segments = tuple(dataclasses.replace(s, category_id=stuff.id, isthing=False) for s in good.segments)
        return PanopticResult(good.panoptic_map, segments, vocabulary)


class Int64Map(_Fuser):
    def fault(self, good, vocabulary):
        return PanopticResult(good.panoptic_map.astype(np.int64), good.segments, vocabulary)


class HalfSizeMap(_Fuser):
    def fault(self, good, vocabulary):
        labels = {s.id: (s.category_id, s.score) for s in good.segments}
        return PanopticResult.from_map(good.panoptic_map[::2, ::2], labels, vocabulary)


class ForeignVocabulary(_Fuser):
    def fault(self, good, vocabulary):
        other = Vocabulary(tuple(dataclasses.replace(c, name=f"other {c.name}") for c in vocabulary.categories), name="other")
        return PanopticResult(good.panoptic_map, good.segments, other)


class _Exporter(SummaryJSONExporter):
    def __init__(self, config=None, context=None):
        super().__init__()

    def export(self, result, image, outdir, stem):
        good = super().export(result, image, outdir, f"{stem}.{type(self).__name__.lower()}")
        return self.fault(good, outdir, stem) if poisoned(image.shape[1]) else good


class ReturnsNone(_Exporter):
    def fault(self, good, outdir, stem):
        return None


class ReturnsStr(_Exporter):
    def fault(self, good, outdir, stem):
        return str(good[0])


class UnwrittenPath(_Exporter):
    def fault(self, good, outdir, stem):
        return [*good, Path(outdir) / f"{stem}.never-written.json"]


class OutsideOutdir(_Exporter):
    def fault(self, good, outdir, stem):
        return [Path(outdir).parent / "elsewhere.json"]


class RaisesHalfway(_Exporter):
    def fault(self, good, outdir, stem):
        atomic_write_text(Path(outdir) / f"{stem}.half.txt", "first half")
        raise RuntimeError("the serialiser crashed halfway")


GENERATORS = {
    "uint8-masks": Uint8Masks,
    "nan-scores": NanScores,
    "half-size-masks": HalfSizeMasks,
    "not-proposals": NotProposals,
    "in-place": InPlace,
    "loose-boxes": LooseBoxes,
    "no-progress": NoProgress,
}
CLASSIFIERS = {
    "nan-probs": NanProbs,
    "float64-probs": Float64Probs,
    "sum-above-one": SumAboveOne,
    "nan-logits": NanLogits,
    "wrong-columns": WrongColumns,
}
FUSERS = {
    "duplicate-ids": DuplicateIds,
    "stuff-twice": StuffTwice,
    "int64-map": Int64Map,
    "half-size-map": HalfSizeMap,
    "foreign-vocabulary": ForeignVocabulary,
}
EXPORTERS = {
    "returns-none": ReturnsNone,
    "returns-str": ReturnsStr,
    "unwritten-path": UnwrittenPath,
    "outside-outdir": OutsideOutdir,
    "raises-halfway": RaisesHalfway,
}


@hookimpl
def register_proposal_generators(register):
    for name, cls in GENERATORS.items():
        register(name, cls, description=f"faulty: {name}")
    register("typed-config", TypedTiles, config=TypedConfig, description="postponed annotations")


@hookimpl
def register_classifiers(register):
    for name, cls in CLASSIFIERS.items():
        register(name, cls, description=f"faulty: {name}")


@hookimpl
def register_fusers(register):
    for name, cls in FUSERS.items():
        register(name, cls, description=f"faulty: {name}")


@hookimpl
def register_exporters(register):
    for name, cls in EXPORTERS.items():
        register(name, cls, description=f"faulty: {name}")
