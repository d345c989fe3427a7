"""Corpus-scale embedding on Ray Data: a callable class for ``Dataset.map_batches``.

::

    import ray
    from mtl.ray import Embedder

    ds = ray.data.read_parquet("corpus/")  # a column "text"
    ds = ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"model": "default", "threads": 2},
        batch_size=1024,
        compute=ray.data.ActorPoolStrategy(size=4),  # actors (processes), one model each
        num_cpus=2,  # cores per actor: match `threads`
        batch_format="numpy",
    )
    ds.write_parquet("embeddings/")

Each actor loads the model once and embeds the batches Ray hands it; the output keeps every
input column and adds ``embedding`` (float32, ``dim`` per row). The same code runs on a laptop
(``ray.init()``) and on a cluster (``ray.init(address="auto")`` on a node of a cluster started
with ``ray start --head`` / ``ray start --address HEAD:6379``). See ``examples/ray_embed.py``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

import mtl


class Embedder:
    """Embeds the ``column`` of each batch into ``output_column``.

    Args:
        model: as :class:`mtl.SentenceEncoder` (``"default"``, a directory every node can
            read, or a hub id each node downloads into its own cache).
        column: the input column of texts. Default: ``text``.
        output_column: the column added. Default: ``embedding``.
        batch_size: texts per forward pass inside the actor. Default: 32.
        normalize_embeddings, pooling: as :meth:`mtl.SentenceEncoder.encode`.
        revision, backend, quantize: as :class:`mtl.SentenceEncoder`.
        threads: compute threads of each actor (match the ``num_cpus`` given to
            ``map_batches``). Default: the CPUs Ray assigned to the actor, else every core.
    """

    def __init__(
        self,
        model: str = "default",
        *,
        column: str = "text",
        output_column: str = "embedding",
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        pooling: Optional[str] = None,
        revision: Optional[str] = None,
        backend: str = "flex",
        quantize: Optional[str] = None,
        threads: Optional[int] = None,
    ) -> None:
        threads = threads or _assigned_cpus()
        if threads:
            try:
                mtl.set_num_threads(threads)
            except RuntimeError:
                pass  # this process's pool already runs (an earlier model): keep it
        self.encoder = mtl.SentenceEncoder(
            model, revision=revision, backend=backend, quantize=quantize
        )
        self.column = column
        self.output_column = output_column
        self.batch_size = batch_size
        self.normalize_embeddings = normalize_embeddings
        self.pooling = pooling

    def __call__(self, batch: Any) -> Any:
        """Embeds one batch: a dict of numpy arrays (``batch_format="numpy"``), a
        ``pyarrow.Table`` (``"pyarrow"``) or a ``pandas.DataFrame`` (``"pandas"``); returns the
        same kind with the embedding column added (float32 rows; a fixed-size list column in
        Arrow)."""
        columns = list(batch.column_names) if hasattr(batch, "column_names") else list(batch.keys())
        if self.column not in columns:
            raise KeyError(
                f"the batch has no column {self.column!r} (columns: {', '.join(map(str, columns))}); "
                "set column=..."
            )
        if hasattr(batch, "column_names"):  # pyarrow.Table
            texts = batch.column(self.column).to_pylist()
        else:
            texts = batch[self.column]
            texts = texts.tolist() if hasattr(texts, "tolist") else list(texts)
        embeddings = self.encoder.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize_embeddings,
            pooling=self.pooling,
        )
        if hasattr(batch, "column_names"):
            import pyarrow as pa

            values = pa.array(embeddings.reshape(-1), type=pa.float32())
            column = pa.FixedSizeListArray.from_arrays(values, embeddings.shape[1])
            return batch.append_column(self.output_column, column)
        if isinstance(batch, dict):
            out = dict(batch)
            out[self.output_column] = embeddings
            return out
        out = batch.copy()  # pandas.DataFrame
        out[self.output_column] = list(embeddings)
        return out


def _assigned_cpus() -> Optional[int]:
    """The whole CPUs Ray assigned to this actor, when it runs in one."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not in Ray, or an older Ray without the call
        return None
    return max(1, int(cpus)) if cpus else None
