"""Bad input raises the documented exception, with a message that names the problem; the
interpreter never crashes."""

import numpy as np
import pytest

import mtl


@pytest.fixture(scope="module")
def model(tiny_dir):
    return mtl.SentenceEncoder(tiny_dir)


def test_missing_model_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mtl.SentenceEncoder(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError):
        mtl.MultiTaskClassifier(tmp_path / "no-such-model")


def test_directory_without_a_model_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        mtl.SentenceEncoder(tmp_path)


def test_a_file_is_not_a_model(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("not a model")
    with pytest.raises(ValueError, match="is a file; it must be a model directory"):
        mtl.SentenceEncoder(path)


def test_unknown_backend_and_precision(tiny_dir):
    with pytest.raises(ValueError, match="unknown backend"):
        mtl.SentenceEncoder(tiny_dir, backend="metal")
    with pytest.raises(ValueError, match="unknown precision"):
        mtl.SentenceEncoder(tiny_dir, quantize="int4")


def test_wrong_types_are_type_errors(model):
    with pytest.raises(TypeError, match="text 1 is int"):
        model.encode(["fine", 3])
    with pytest.raises(TypeError, match="text 0 is NoneType"):
        model.encode([None])
    with pytest.raises(TypeError, match="sequence of texts"):
        model.encode(42)
    with pytest.raises(TypeError):
        model.encode(["fine"], batch_size="8")


def test_text_that_is_not_utf8_is_a_value_error(model):
    with pytest.raises(ValueError, match="text 1 is bytes that are not UTF-8"):
        model.encode(["fine", b"caf\xe9"])
    with pytest.raises(ValueError, match="text 0 cannot be encoded as UTF-8"):
        model.encode(["lone \udcff surrogate"])


def test_bad_options_are_value_errors(model):
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(["a"], batch_size=0)
    with pytest.raises(OverflowError):
        model.encode(["a"], batch_size=-1)
    with pytest.raises(ValueError, match="max_seq_length"):
        model.max_seq_length = 0
    with pytest.raises(ValueError, match="max_seq_length"):
        model.max_seq_length = 10_000
    with pytest.raises(ValueError, match="shape"):
        model.similarity(np.zeros((2, 3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        model.similarity(np.array([np.nan, 1.0]), np.array([1.0, 1.0]))


def test_empty_input_gives_empty_output(model):
    assert model.encode([]).shape == (0, model.get_sentence_embedding_dimension())
    assert model.encode(np.array([], dtype=str)).shape == (0, model.get_sentence_embedding_dimension())


def test_set_num_threads_after_start_is_a_runtime_error(model):
    model.encode(["the pool runs now"])
    assert mtl.num_threads() >= 1
    with pytest.raises(RuntimeError, match="already running"):
        mtl.set_num_threads(1)
    with pytest.raises(ValueError):
        mtl.set_num_threads(0)
