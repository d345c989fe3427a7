"""`mtl.ray.Embedder` on a real local Ray cluster (started here, two actor processes, stopped
after): 10,000 texts through `map_batches` give one `encode` call's vectors, in order."""

import os
import random

import numpy as np
import pytest
import ray

import mtl
from mtl.ray import Embedder


class PidEmbedder(Embedder):
    """Embedder that also records which process embedded each row."""

    def __call__(self, batch):
        out = super().__call__(batch)
        out["pid"] = np.full(len(out["text"]), os.getpid())
        return out


@pytest.fixture(scope="module")
def cluster():
    # A cluster of this process's own: `ray.init` starts its head (GCS, raylet, object store)
    # and `ray.shutdown` stops exactly it; any other Ray cluster on the machine is left alone.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        # The workers import `mtl` from where this process does, and this module (PidEmbedder).
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), os.path.dirname(__file__)])}},
    )
    try:
        yield
    finally:
        ray.shutdown()


def corpus(n: int) -> list:
    rng = random.Random(11)
    words = "the a team game phone market good bad new play win lose great terrible of to".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randrange(0, 24))) for _ in range(n)]


def test_map_batches_equals_one_encode_in_order(cluster, tiny_dir):
    # The tiny fixture model, for time (MiniLM takes 100 s here for the same check, and passes
    # it); unit-length vectors, so that 1e-6 is relative to the vectors' size (the tiny
    # model's raw vectors have a norm of about 5): Ray's batches pad differently from one call,
    # which moves the last bits.
    texts = corpus(10_000)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    dataset = ray.data.from_items([{"text": t} for t in texts], override_num_blocks=20)
    embedded = dataset.map_batches(
        PidEmbedder,
        fn_constructor_kwargs={"model": str(tiny_dir), "threads": 1, "normalize_embeddings": True},
        compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=1,
        batch_size=500,
        batch_format="numpy",
    )
    rows = embedded.take_all()
    assert [r["text"] for r in rows] == texts
    got = np.stack([r["embedding"] for r in rows])
    expected = mtl.SentenceEncoder(tiny_dir).encode(texts, normalize_embeddings=True)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.isfinite(got).all()
    assert float(np.abs(got - expected).max()) <= 1e-6
    pids = {int(r["pid"]) for r in rows}
    assert len(pids) >= 2, f"one worker process did all the work: {pids}"
    assert os.getpid() not in pids


def test_missing_column_names_the_columns(tiny_dir):
    embedder = Embedder(str(tiny_dir), column="sentence")
    with pytest.raises(KeyError, match="columns: text"):
        embedder({"text": np.array(["a"])})


def test_every_batch_format_gets_the_same_embeddings(tiny_dir):
    import pandas as pd
    import pyarrow as pa

    texts = corpus(50)
    embedder = Embedder(str(tiny_dir))
    expected = mtl.SentenceEncoder(tiny_dir).encode(texts)
    as_numpy = embedder({"text": np.array(texts), "id": np.arange(50)})
    assert list(as_numpy) == ["text", "id", "embedding"]
    assert np.array_equal(as_numpy["embedding"], expected)
    as_arrow = embedder(pa.table({"text": texts, "id": list(range(50))}))
    assert as_arrow.column_names == ["text", "id", "embedding"]
    assert np.array_equal(np.array(as_arrow.column("embedding").to_pylist(), dtype=np.float32), expected)
    as_pandas = embedder(pd.DataFrame({"text": texts, "id": range(50)}))
    assert list(as_pandas.columns) == ["text", "id", "embedding"]
    assert np.array_equal(np.stack(as_pandas["embedding"].to_list()), expected)
