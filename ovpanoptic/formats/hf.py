"""A Hugging Face ``datasets``-loadable copy: one Parquet file per split.

``data/SPLIT-00000-of-00001.parquet`` with the columns ``image_id``, ``file_name``, ``image``
(the original image, or null when it was not found), ``panoptic`` (the COCO panoptic RGB PNG),
``semantic`` (the class-index PNG) and ``segments_info`` (``id``, ``category_id``, ``iscrowd``,
``area``, ``bbox``). The images are stored as ``{"bytes", "path"}`` structs and the schema
carries the ``datasets`` feature description (``huggingface`` metadata key), so
``datasets.load_dataset("parquet", data_files=...)`` or ``load_dataset(DATASET_DIR)`` (through
the card's ``configs``) decodes them as ``Image`` features. Written with pyarrow; ``datasets``
itself is not needed to write.

Written by ``ovpanoptic package`` (:mod:`ovpanoptic.packaging`); no ovpanoptic reader and no
detection rule (``datasets`` reads the folder; the panoptic column is the COCO panoptic PNG).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["FEATURES", "ParquetSplitWriter", "parquet_name"]

#: The ``datasets`` features of the columns (``Features.to_dict()`` form).
FEATURES: Mapping[str, Any] = {
    "image_id": {"dtype": "int64", "_type": "Value"},
    "file_name": {"dtype": "string", "_type": "Value"},
    "image": {"_type": "Image"},
    "panoptic": {"_type": "Image"},
    "semantic": {"_type": "Image"},
    "segments_info": {
        "feature": {
            "id": {"dtype": "int64", "_type": "Value"},
            "category_id": {"dtype": "int64", "_type": "Value"},
            "iscrowd": {"dtype": "int64", "_type": "Value"},
            "area": {"dtype": "int64", "_type": "Value"},
            "bbox": {"feature": {"dtype": "int64", "_type": "Value"}, "_type": "List"},
        },
        "_type": "List",
    },
}


def parquet_name(split: str) -> str:
    return f"{split}-00000-of-00001.parquet"


def _schema() -> Any:
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    segment = pa.struct([
        ("id", pa.int64()), ("category_id", pa.int64()), ("iscrowd", pa.int64()), ("area", pa.int64()), ("bbox", pa.list_(pa.int64())),
    ])
    fields = [
        ("image_id", pa.int64()), ("file_name", pa.string()), ("image", image), ("panoptic", image), ("semantic", image),
        ("segments_info", pa.list_(segment)),
    ]
    metadata = {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}
    return pa.schema(fields, metadata=metadata)


class ParquetSplitWriter:
    """Appends rows to one split's Parquet file, a row group per ``batch`` images (bounded memory)."""

    def __init__(self, path: Path, *, batch: int = 64) -> None:
        import pyarrow.parquet as pq

        self._schema = _schema()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(str(path), self._schema)
        self._rows: list[dict[str, Any]] = []
        self._batch = batch

    def add(
        self, image_id: int, file_name: str, image: tuple[bytes, str] | None, panoptic: bytes, semantic: bytes,
        segments: Sequence[Mapping[str, Any]],
    ) -> None:
        stem = Path(file_name).stem
        self._rows.append({
            "image_id": image_id, "file_name": file_name,
            "image": None if image is None else {"bytes": image[0], "path": image[1]},
            "panoptic": {"bytes": panoptic, "path": f"{stem}.png"}, "semantic": {"bytes": semantic, "path": f"{stem}.png"},
            "segments_info": [{k: s[k] for k in ("id", "category_id", "iscrowd", "area", "bbox")} for s in segments],
        })
        if len(self._rows) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
