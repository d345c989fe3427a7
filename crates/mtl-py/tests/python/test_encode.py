"""`mtl.SentenceEncoder` against sentence-transformers, on the fixture model and MiniLM."""

import threading
import time

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

import mtl
from conftest import FIXTURES

# Largest absolute difference allowed between our embeddings and sentence-transformers'
# (float32 on both sides; the Rust tests hold the encoder to 5e-6 on MiniLM's hidden states).
TOLERANCE = 1e-5


def assert_close(ours: np.ndarray, theirs: np.ndarray, tolerance: float = TOLERANCE) -> None:
    assert ours.dtype == np.float32
    assert ours.shape == theirs.shape
    assert np.isfinite(ours).all() and np.isfinite(theirs).all()
    worst = float(np.abs(ours - theirs).max()) if ours.size else 0.0
    assert worst <= tolerance, f"largest difference {worst:.3g} > {tolerance}"


@pytest.fixture(scope="module", params=["tiny", "tiny-pretraining", "minilm"])
def models(request, tiny_dir, minilm_dir):
    # tiny-pretraining: a BertForPreTraining checkpoint in pytorch_model.bin (`bert.` names,
    # heads left out), the vocab.txt/tokenizer.json of the fixtures.
    path = {
        "tiny": tiny_dir,
        "tiny-pretraining": FIXTURES / "tiny-bert-pretraining",
        "minilm": minilm_dir,
    }[request.param]
    return mtl.SentenceEncoder(path), SentenceTransformer(str(path), device="cpu")


def test_encode_equals_sentence_transformers(models, sentences):
    ours, theirs = models
    assert ours.max_seq_length == theirs.max_seq_length
    assert ours.get_sentence_embedding_dimension() == theirs.get_sentence_embedding_dimension()
    for batch_size in (1, 3, 32):
        assert_close(
            ours.encode(sentences, batch_size=batch_size),
            theirs.encode(sentences, batch_size=batch_size, convert_to_numpy=True),
        )


def test_normalize_and_similarity_equal_sentence_transformers(models, sentences):
    ours, theirs = models
    a = ours.encode(sentences, normalize_embeddings=True)
    b = theirs.encode(sentences, normalize_embeddings=True)
    assert_close(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    assert_close(ours.similarity(a, a[:3]), theirs.similarity(b, b[:3]).numpy())
    # Texts are embedded first.
    assert_close(ours.similarity(sentences[:2], sentences[2:4]), theirs.similarity(b[:2], b[2:4]).numpy())


def test_max_seq_length_truncates_as_sentence_transformers(models, sentences):
    ours, theirs = models
    before = ours.max_seq_length
    try:
        ours.max_seq_length = 8
        theirs.max_seq_length = 8
        assert_close(ours.encode(sentences), theirs.encode(sentences))
    finally:
        ours.max_seq_length = before
        theirs.max_seq_length = before


def test_shapes_follow_sentence_transformers(tiny_dir, sentences):
    model = mtl.SentenceEncoder(tiny_dir)
    dim = model.get_sentence_embedding_dimension()
    one = model.encode(sentences[0])
    assert one.shape == (dim,)
    assert_close(one, model.encode(sentences[:1])[0], 0.0)
    listed = model.encode(sentences, convert_to_numpy=False)
    assert isinstance(listed, list) and len(listed) == len(sentences)
    assert_close(np.stack(listed), model.encode(sentences), 0.0)
    assert model.encode([]).shape == (0, dim)
    # A tuple, a numpy array of str and UTF-8 bytes are texts too.
    expected = model.encode(sentences)
    assert_close(model.encode(tuple(sentences)), expected, 0.0)
    assert_close(model.encode(np.array(sentences)), expected, 0.0)
    assert_close(model.encode([s.encode() for s in sentences]), expected, 0.0)
    # The arrays are the caller's to change.
    expected[0, 0] = 1.0


def test_progress_bar_gives_the_same_embeddings(tiny_dir, sentences, capsys):
    model = mtl.SentenceEncoder(tiny_dir)
    texts = sentences * 30
    plain = model.encode(texts, batch_size=4)
    shown = model.encode(texts, batch_size=4, show_progress_bar=True)
    assert_close(shown, plain, 1e-6)


def test_pooling_choices(minilm_dir, sentences):
    model = mtl.SentenceEncoder(minilm_dir)
    cls = model.encode(sentences, pooling="cls")
    mean = model.encode(sentences, pooling="mean")
    assert cls.shape == mean.shape
    assert not np.allclose(cls, mean)
    with pytest.raises(ValueError, match="pooling"):
        model.encode(sentences, pooling="median")


def test_int8_is_close_to_fp32(minilm_dir, sentences):
    fp32 = mtl.SentenceEncoder(minilm_dir)
    int8 = mtl.SentenceEncoder(minilm_dir, quantize="int8")
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    a, b = fp32.encode(sentences), int8.encode(sentences)
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.isfinite(cosine).all()
    assert cosine.min() >= 0.99, cosine


def test_encode_releases_the_gil(minilm_dir, sentences):
    """A second Python thread runs while `encode` computes (it could not if the GIL were held)."""
    model = mtl.SentenceEncoder(minilm_dir)
    texts = sentences * 40
    counter = {"n": 0}
    running = threading.Event()
    stop = threading.Event()

    def count():
        running.set()
        while not stop.is_set():
            counter["n"] += 1

    thread = threading.Thread(target=count)
    thread.start()
    running.wait()
    before = counter["n"]
    started = time.perf_counter()
    model.encode(texts)
    during = counter["n"] - before
    seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    # With the GIL held the whole call, the thread would get no turn (at most one at the
    # switch before the call); released, it counts freely (millions per second).
    assert seconds > 0.05, "encode was too short to tell"
    assert during > 10_000, f"the other thread counted only {during} times in {seconds:.2f} s"
