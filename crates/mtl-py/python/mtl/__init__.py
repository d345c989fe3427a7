"""mtl from Python: sentence embeddings, multi-task predictions and training on mtl's Rust core.

The API follows sentence-transformers where the concepts match, so that code moves over by
changing an import::

    from mtl import SentenceEncoder

    model = SentenceEncoder()  # the default all-MiniLM-L6-v2
    embeddings = model.encode(["A sentence.", "Another one."])  # numpy float32, (2, 384)
    scores = model.similarity(embeddings, embeddings)  # cosine, (2, 2)

Every model call runs without the GIL: other Python threads go on while a model computes.
Errors are ``FileNotFoundError`` (no such model, file or data), ``ValueError`` (bad input or
settings, with the text's index), ``TypeError`` (a value of the wrong type) or
``RuntimeError`` (anything else), with the messages the ``mtl`` command prints.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from . import _mtl

__all__ = [
    "SentenceEncoder",
    "MultiTaskClassifier",
    "train",
    "set_num_threads",
    "num_threads",
    "backends",
    "__version__",
]

__version__: str = _mtl.__version__

PathLike = Union[str, "os.PathLike[str]"]


def set_num_threads(threads: int) -> None:
    """Sets how many threads the CPU backends (flex, ndarray) compute on.

    Only before the first model is loaded; default: one per core, or ``RAYON_NUM_THREADS``.
    Raises ``RuntimeError`` once the thread pool runs.
    """
    _mtl.set_num_threads(threads)


def num_threads() -> int:
    """The number of threads the CPU backends compute on."""
    return _mtl.num_threads()


def backends() -> List[str]:
    """The backends compiled into this package (``flex`` always; others by Cargo feature)."""
    return list(_mtl.backends())


class SentenceEncoder:
    """A BERT-family sentence encoder, as sentence-transformers' ``SentenceTransformer``.

    Args:
        model: ``"default"`` (all-MiniLM-L6-v2, fetched into mtl's cache on first use), a
            model directory (Hugging Face or sentence-transformers layout, or a model saved by
            ``mtl train``), or a Hugging Face hub id ``owner/name`` (downloaded into the hub
            cache, shared with ``huggingface_hub``).
        revision: branch, tag or commit of a hub id. Default: ``main``.
        backend: ``flex`` (default), or another backend compiled in (see :func:`backends`).
        quantize: ``None`` (float32) or ``"int8"``: the encoder's linear layers quantised as
            the model loads (flex only; the files are not changed).
        device: the backend's device index (GPU backends). Default: 0.
    """

    def __init__(
        self,
        model: PathLike = "default",
        *,
        revision: Optional[str] = None,
        backend: str = "flex",
        quantize: Optional[str] = None,
        device: int = 0,
    ) -> None:
        self._encoder = _mtl.Encoder(os.fspath(model), revision, backend, quantize, device)

    def encode(
        self,
        sentences: Union[str, Sequence[str]],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = False,
        pooling: Optional[str] = None,
    ) -> Union[np.ndarray, List[np.ndarray]]:
        """Embeds ``sentences``.

        Args:
            sentences: one text, or a sequence of texts (a list, a tuple, a numpy array of
                strings; ``bytes`` must be UTF-8).
            batch_size: texts per forward pass (texts are sorted by length into batches;
                padding never changes an embedding). Default: 32.
            show_progress_bar: draw a progress bar (tqdm when installed) over the batches.
            convert_to_numpy: return one float32 array ``(len(sentences), dim)``; with
                ``False``, a list of 1-D arrays, one per text.
            normalize_embeddings: L2-normalise the embeddings. With ``False`` the model's own
                setting holds (a ``Normalize`` module normalises, as in sentence-transformers).
            pooling: ``cls``, ``pooler``, ``mean`` or ``max`` instead of the model's pooling.

        Returns:
            The embeddings in the order of ``sentences``; for a single ``str``, one 1-D array.
            An empty sequence gives an array of shape ``(0, dim)``.
        """
        single = isinstance(sentences, (str, bytes))
        texts = [sentences] if single else _as_list(sentences)
        normalize = True if normalize_embeddings else None
        if show_progress_bar and len(texts) > 0:
            embeddings = self._encode_with_progress(texts, batch_size, normalize, pooling)
        else:
            embeddings = self._encode(texts, batch_size, normalize, pooling)
        if single:
            return embeddings[0]
        return embeddings if convert_to_numpy else list(embeddings)

    def _encode(
        self, texts: list, batch_size: int, normalize: Optional[bool], pooling: Optional[str]
    ) -> np.ndarray:
        values, rows, dim = self._encoder.encode(texts, batch_size, normalize, pooling)
        return np.frombuffer(values, dtype=np.float32).reshape(rows, dim)

    def _encode_with_progress(
        self, texts: list, batch_size: int, normalize: Optional[bool], pooling: Optional[str]
    ) -> np.ndarray:
        # Chunks of 8 batches: the bar moves, and each chunk still sorts its texts by length.
        chunk = batch_size * 8
        parts = []
        with _progress_bar(len(texts), "Batches", batch_size) as bar:
            for start in range(0, len(texts), chunk):
                part = texts[start : start + chunk]
                parts.append(self._encode(part, batch_size, normalize, pooling))
                bar.update(len(part))
        return np.concatenate(parts)

    def similarity(self, a: Any, b: Any) -> np.ndarray:
        """Cosine similarity of every row of ``a`` with every row of ``b``: ``(len(a), len(b))``.

        ``a`` and ``b`` are embeddings (1-D or 2-D arrays), as sentence-transformers'
        ``similarity`` takes, or texts, which are embedded first.
        """
        left = _rows(self, a)
        right = _rows(self, b)
        return _unit(left) @ _unit(right).T

    @property
    def max_seq_length(self) -> int:
        """Truncation length in tokens; longer texts are cut. Settable, as in
        sentence-transformers (up to the model's position embeddings)."""
        return self._encoder.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._encoder.max_seq_length = value

    def get_sentence_embedding_dimension(self) -> int:
        """Width of the embeddings."""
        return self._encoder.dim

    @property
    def model_dir(self) -> str:
        """The model's local directory."""
        return str(self._encoder.model_dir)

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8``."""
        return self._encoder.precision

    @property
    def backend(self) -> str:
        """The backend the model runs on."""
        return self._encoder.backend

    def __repr__(self) -> str:
        return (
            f"SentenceEncoder({self.model_dir!r}, dim={self.get_sentence_embedding_dimension()}, "
            f"pooling={self._encoder.pooling!r}, normalize={self._encoder.normalize}, "
            f"max_seq_length={self.max_seq_length}, backend={self.backend!r}, "
            f"precision={self.precision!r})"
        )


class MultiTaskClassifier:
    """A multi-task model trained by ``mtl train`` (or :func:`train`): one shared encoder, one
    classification head per task.

    Args:
        model: the model's directory (a run's ``best/`` or ``final/``).
        backend: ``flex`` (default) or another backend compiled in.
        quantize: ``None`` (float32) or ``"int8"`` (the shared encoder's linear layers).
        device: the backend's device index. Default: 0.
    """

    def __init__(
        self,
        model: PathLike,
        *,
        backend: str = "flex",
        quantize: Optional[str] = None,
        device: int = 0,
    ) -> None:
        self._classifier = _mtl.Classifier(os.fspath(model), backend, quantize, device)
        self._labels = {name: list(labels) for name, labels in self._classifier.tasks}

    @property
    def tasks(self) -> List[str]:
        """The tasks, in the model's order."""
        return list(self._labels)

    def labels(self, task: str) -> List[str]:
        """The labels of ``task``, in the order of its probabilities."""
        if task not in self._labels:
            raise ValueError(f"unknown task {task!r}; the model's tasks: {', '.join(self._labels)}")
        return list(self._labels[task])

    def predict_proba(
        self,
        texts: Union[str, Sequence[Any]],
        tasks: Union[None, str, Sequence[str]] = None,
        batch_size: int = 32,
    ) -> Dict[str, np.ndarray]:
        """Each task's label probabilities: ``{task: float32 array (len(texts), labels)}``.

        Args:
            texts: one text, or a sequence of texts; an item that is a pair ``(a, b)`` makes
                every item a sentence pair (encoded as BERT pairs, for pair tasks).
            tasks: ``None`` (every task; the encoder runs once per batch), one task, or a list.
            batch_size: texts per forward pass. Default: 32.
        """
        if isinstance(texts, (str, bytes)):
            texts = [texts]
        texts = _as_list(texts)
        pairs = len(texts) > 0 and isinstance(texts[0], (tuple, list))
        wanted = self._wanted(tasks)
        one = wanted[0] if len(wanted) == 1 else None
        results = self._classifier.predict_proba(texts, one, batch_size, pairs)
        out = {}
        for name, labels, values, rows in results:
            if name in wanted:
                out[name] = np.frombuffer(values, dtype=np.float32).reshape(rows, len(labels))
        return {name: out[name] for name in wanted}

    def predict(
        self,
        texts: Union[str, Sequence[Any]],
        tasks: Union[None, str, Sequence[str]] = None,
        batch_size: int = 32,
    ) -> Dict[str, List[Dict[str, Any]]]:
        """Each task's most probable label per text:
        ``{task: [{"label": str, "score": float}, ...]}`` in the order of ``texts``
        (the same labels and scores as ``mtl predict``)."""
        probabilities = self.predict_proba(texts, tasks, batch_size)
        out = {}
        for name, rows in probabilities.items():
            labels = self._labels[name]
            best = rows.argmax(axis=1) if len(rows) else []
            out[name] = [
                {"label": labels[int(i)], "score": float(row[int(i)])} for i, row in zip(best, rows)
            ]
        return out

    def _wanted(self, tasks: Union[None, str, Sequence[str]]) -> List[str]:
        if tasks is None:
            return self.tasks
        wanted = [tasks] if isinstance(tasks, str) else list(tasks)
        for task in wanted:
            self.labels(task)
        if not wanted:
            raise ValueError("tasks is empty: give None for every task, or task names")
        return wanted

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8``."""
        return self._classifier.precision

    @property
    def model_dir(self) -> str:
        """The model's directory."""
        return str(self._classifier.model_dir)

    def __repr__(self) -> str:
        return f"MultiTaskClassifier({self.model_dir!r}, tasks={self.tasks}, precision={self.precision!r})"


def train(
    config: Union[Dict[str, Any], PathLike],
    *,
    resume: bool = False,
    overwrite: bool = False,
    backend: str = "flex",
    device: int = 0,
    progress: Union[bool, Callable[[Dict[str, Any]], None], None] = None,
) -> Dict[str, Any]:
    """Trains a multi-task model, as ``mtl train`` does.

    Args:
        config: the run's settings: a dict with ``mtl train``'s TOML keys (``output``,
            ``model``, ``tasks`` = ``[{"name": ..., "data": ...}]``, ``epochs``, ...; missing
            keys take their defaults), or the path of a TOML or JSON file. With ``resume``,
            the run directory to continue.
        resume: continue the run in ``config`` (a directory) from its last checkpoint.
        overwrite: replace an earlier run in ``output`` (only one mtl made).
        backend: ``flex`` (default) or another backend compiled in.
        device: the backend's device index. Default: 0.
        progress: ``True`` for a progress bar (tqdm when installed) and notes on standard
            error, or a callable that receives each event as a dict (``{"event": "step",
            "step": 12, ...}``; kinds: started, note, epoch_started, step, epoch_finished,
            evaluated, checkpoint, cache_started, cache_progress, cache_finished).

    Returns:
        The run's summary (as its ``summary.json``): the run directory, steps, the best
        validation evaluation, and validation and test metrics per task.

    Ctrl-C (``KeyboardInterrupt``) stops the run after the current step, writes a
    checkpoint, and is raised; ``train(run_dir, resume=True)`` continues from that step.
    """
    if isinstance(config, dict):
        native_config: Any = config
    else:
        native_config = os.fspath(config)
    if progress is True:
        callback: Optional[Callable[[str], None]] = _TrainProgress()
    elif callable(progress):
        user = progress
        callback = lambda event: user(json.loads(event))  # noqa: E731
    else:
        callback = None
    try:
        summary = _mtl.train(native_config, resume, overwrite, backend, device, callback)
    finally:
        if isinstance(callback, _TrainProgress):
            callback.close()
    return json.loads(summary)


class _TrainProgress:
    """``progress=True``: a bar over the run's steps, notes and evaluations on standard error."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, event_json: str) -> None:
        event = json.loads(event_json)
        kind = event["event"]
        if kind == "started":
            self._bar = _progress_bar(event["total_steps"], "Steps", 1)
            if event.get("resumed_at"):
                self._bar.update(event["resumed_at"])
        elif kind == "step" and self._bar is not None:
            self._bar.update(event["step"] - self._bar.n)
        elif kind == "note":
            self._write(event["message"])
        elif kind == "evaluated":
            scores = ", ".join(
                f"{m['task']} acc {m['accuracy']:.4f} F1 {m['macro_f1']:.4f}" for m in event["metrics"]
            )
            self._write(f"step {event['step']}: {event['split']}: {scores}{' (best)' if event['best'] else ''}")

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _progress_bar(total: int, unit: str, step: int) -> Any:
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=unit)
    except ImportError:
        return _TextBar(total, unit)


class _TextBar:
    """A plain progress line on standard error, when tqdm is not installed."""

    def __init__(self, total: int, unit: str) -> None:
        self.total, self.unit, self.n = total, unit, 0

    def update(self, n: int) -> None:
        self.n += n
        print(f"\r{self.unit}: {self.n}/{self.total}", end="", file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        print(f"\r{line}", file=sys.stderr)

    def close(self) -> None:
        print(file=sys.stderr)

    def __enter__(self) -> "_TextBar":
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()


def _as_list(items: Iterable[Any]) -> list:
    if isinstance(items, np.ndarray):
        return items.tolist()
    if isinstance(items, list):
        return items
    try:
        return list(items)
    except TypeError:
        raise TypeError(f"expected a sequence of texts (str), got {type(items).__name__}") from None


def _rows(encoder: SentenceEncoder, x: Any) -> np.ndarray:
    if isinstance(x, (str, bytes)) or (
        isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], (str, bytes))
    ):
        x = encoder.encode([x] if isinstance(x, (str, bytes)) else list(x))
    rows = np.asarray(x, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2:
        raise ValueError(f"expected embeddings of shape (n, dim) or (dim,), got {rows.shape}")
    if not np.isfinite(rows).all():
        raise ValueError("embeddings hold NaN or infinite values")
    return rows


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)
