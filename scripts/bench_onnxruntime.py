#!/usr/bin/env python3
"""The ONNX Runtime side of `cargo xtask bench --with-onnxruntime`: one measurement per process,
printed as one JSON line with the same keys as `mtl-bench` and bench_pytorch.py.

    python3 scripts/bench_onnxruntime.py embed --corpus FILE --model DIR --batch-size 32 \\
        [--threads 2] [--precision fp32|int8] [--onnx-cache DIR]

- embed: embeddings of the corpus through ONNX Runtime (CPUExecutionProvider, intra-op threads
  --threads, inter-op 1, ORT_ENABLE_ALL), texts/s. The work is sentence-transformers' `encode`:
  the texts sorted by length into batches, the same fast tokenizer (256 tokens at most), mean
  pooling over the attention mask and L2 normalisation (in numpy). The timed run covers the
  whole corpus after an untimed warm-up on its first 64 texts; the export does not count.
  Checked: the warm-up's embeddings against sentence-transformers' of the same 64 texts (the
  fp32 model fails above 1e-4 or on NaN; int8 reports its difference). For int8 the result also
  has the cosine similarity of its embeddings to the fp32 model's over the corpus (mean, min).
- prepare: what embed starts in a child process when its files are missing (so that torch never
  counts in its peak RSS): the model exported with torch.onnx.export (BertModel, inputs
  input_ids, attention_mask, token_type_ids, dynamic batch and sequence axes, output
  last_hidden_state), its int8 dynamic quantisation (QInt8 weights, per channel), and
  sentence-transformers' embeddings of the first 64 texts.

The files live in --onnx-cache/<model directory name>/ (default: $MTL_CACHE_DIR/bench/onnx, else
.cache/bench/onnx), each written to a temporary file and renamed into place, and are reused while
`source.json` (the model's sha256 and the package versions) still matches.
"""

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure()

# The measured process needs only transformers' tokenizer: without this it imports torch too,
# which would count in its peak RSS. `prepare`, which needs torch, sets it back.
os.environ.setdefault("USE_TORCH", "0")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402

# The first texts of the corpus: the warm-up, and the check against sentence-transformers.
HEAD = 64
# Largest allowed |fp32 ONNX Runtime - sentence-transformers| over the head's embeddings.
TOLERANCE = 1e-4
OPSET = 17
# quantize_dynamic's options beside QInt8 weights. One scale per output channel, not per tensor:
# on 200 texts of the corpus per-tensor weights reached a cosine similarity to fp32 of 0.960 on
# average (0.927 at worst), per-channel ones 0.993 (0.984), at the same speed.
QUANTIZATION = {"per_channel": True}


def read_corpus(path):
    """One text per line, split as `mtl-bench` splits it (Rust's `str::lines`)."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def key(*parts):
    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def versions():
    from importlib.metadata import version

    return {name: version(name) for name in ["torch", "transformers", "onnx", "onnxruntime"]}


class Files:
    """The cached files of one model."""

    def __init__(self, args, corpus):
        cache = args.onnx_cache
        if cache is None:
            base = os.environ.get("MTL_CACHE_DIR") or str(_venv.ROOT / ".cache")
            cache = Path(base) / "bench" / "onnx"
        self.dir = Path(cache) / args.model.resolve().name
        self.fp32 = self.dir / "model.onnx"
        self.int8 = self.dir / "model.int8.onnx"
        self.source_json = self.dir / "source.json"
        self.source = {
            "model_sha256": sha256_file(args.model / "model.safetensors"),
            "opset": OPSET,
            "quantization": QUANTIZATION,
            **versions(),
        }
        source = json.dumps(self.source, sort_keys=True)
        # sentence-transformers' embeddings of the head, and the fp32 model's of the corpus.
        self.reference = self.dir / f"reference-{key(source, args.batch_size, *corpus[:HEAD])}.npy"
        self.fp32_corpus = self.dir / f"fp32-{key(source, args.batch_size, *corpus)}.npy"

    def exported(self):
        try:
            current = json.loads(self.source_json.read_text()) == self.source
        except (OSError, ValueError):
            current = False
        return current and self.fp32.is_file() and self.int8.is_file()

    def ready(self):
        return self.exported() and self.reference.is_file()


def replace_atomically(path, write):
    """Calls write(temporary path), then renames the temporary file to path."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_npy(path, array):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    replace_atomically(path, write)


def bert_config(model_dir):
    """sentence-transformers' `max_seq_length` and `do_lower_case` for the model."""
    path = model_dir / "sentence_bert_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    return config.get("max_seq_length", 256), config.get("do_lower_case", False)


def encode(session, tokenizer, texts, batch_size, max_length, lower):
    """sentence-transformers' `encode(texts, normalize_embeddings=True)`, through ONNX Runtime."""
    # As SentenceTransformer.encode: longest texts (in characters) first, then in batches.
    order = np.argsort([-len(text) for text in texts])
    inputs = [i.name for i in session.get_inputs()]
    out = None
    for start in range(0, len(texts), batch_size):
        index = order[start : start + batch_size]
        # As models.Transformer.tokenize.
        batch = [str(texts[int(i)]).strip() for i in index]
        if lower:
            batch = [text.lower() for text in batch]
        features = tokenizer(
            batch, padding=True, truncation="longest_first", return_tensors="np", max_length=max_length
        )
        (hidden,) = session.run(["last_hidden_state"], {name: features[name] for name in inputs})
        # As models.Pooling (mean) and models.Normalize.
        mask = features["attention_mask"][..., None].astype(hidden.dtype)
        pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        if out is None:
            out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
        out[index] = pooled / np.maximum(norm, 1e-12)
    return out


def session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_abs_diff(a, b):
    diff = float(np.max(np.abs(a - b)))
    return diff if np.isfinite(a).all() else float("nan")


def check(name, diff):
    if not diff <= TOLERANCE:
        sys.exit(
            f"bench_onnxruntime: {name} embeddings of the first {HEAD} texts differ from "
            f"sentence-transformers' by {diff} (more than {TOLERANCE}, or NaN)"
        )


def export(args, files):
    import torch
    from transformers import AutoTokenizer, BertModel

    torch.set_num_threads(args.threads)
    # Eager attention: plain MatMul-Softmax-MatMul in the graph (no pooler: unused by the embedding).
    bert = BertModel.from_pretrained(str(args.model), add_pooling_layer=False, attn_implementation="eager")
    bert.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    sample = tokenizer(["an example", "a longer example sentence"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {0: "batch", 1: "sequence"}

    def write(tmp):
        with torch.no_grad(), warnings.catch_warnings():
            # "You are using the legacy TorchScript-based ONNX export": chosen, see below.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                LastHiddenState(bert),
                tuple(sample[name] for name in names),
                str(tmp),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={name: axes for name in [*names, "last_hidden_state"]},
                opset_version=OPSET,
                do_constant_folding=True,
                # The TorchScript exporter: the default (dynamo) one needs onnxscript.
                dynamo=False,
            )

    replace_atomically(files.fp32, write)


def quantize(files):
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Its advice to pre-process (shape inference) first is logged as a warning on every run.
    logging.getLogger().setLevel(logging.ERROR)
    replace_atomically(
        files.int8,
        lambda tmp: quantize_dynamic(str(files.fp32), str(tmp), weight_type=QuantType.QInt8, **QUANTIZATION),
    )


def prepare(args, corpus, files):
    os.environ["USE_TORCH"] = "1"
    files.dir.mkdir(parents=True, exist_ok=True)
    if not files.exported():
        files.source_json.unlink(missing_ok=True)
        for stale in files.dir.glob("*.npy"):
            stale.unlink()
        print(f"bench_onnxruntime: exporting {args.model} to {files.dir}", file=sys.stderr)
        export(args, files)
        quantize(files)
        replace_atomically(files.source_json, lambda tmp: tmp.write_text(json.dumps(files.source, indent=2)))
    if not files.reference.is_file():
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(args.threads)
        model = SentenceTransformer(str(args.model), device="cpu")
        reference = model.encode(corpus[:HEAD], batch_size=args.batch_size, normalize_embeddings=True)
        save_npy(files.reference, reference.astype(np.float32))


def embed(args, corpus, files):
    if not files.ready():
        # torch and the export run in a child process: none of it counts in this one's peak RSS.
        command = [sys.executable, __file__, "prepare", *sys.argv[2:]]
        subprocess.run(command, check=True, env={**os.environ, "USE_TORCH": "1"})
        if not files.ready():
            sys.exit(f"bench_onnxruntime: {command} left no usable files in {files.dir}")

    import onnxruntime as ort
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    max_length, lower = bert_config(args.model)
    model = session(files.fp32 if args.precision == "fp32" else files.int8, args.threads)

    def run(texts, sess=model):
        return encode(sess, tokenizer, texts, args.batch_size, max_length, lower)

    warm = run(corpus[:HEAD])
    started = time.perf_counter()
    out = run(corpus)
    seconds = time.perf_counter() - started
    # Measured here: what follows (the fp32 model for the comparison) is not the measurement's.
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    reference = np.load(files.reference)
    result = {
        "measurement": "embed",
        "batch_size": args.batch_size,
        "examples": len(out),
        "seconds": seconds,
        "throughput": len(out) / seconds,
        "peak_rss_mib": peak_rss_mib,
        "precision": args.precision,
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "max_abs_diff_to_sentence_transformers": max_abs_diff(warm, reference),
    }
    if not np.isfinite(out).all():
        sys.exit(f"bench_onnxruntime: the {args.precision} model's embeddings have NaN or infinity")
    if args.precision == "fp32":
        check("fp32", result["max_abs_diff_to_sentence_transformers"])
        if not files.fp32_corpus.is_file():
            save_npy(files.fp32_corpus, out)
    else:
        if files.fp32_corpus.is_file():
            fp32 = np.load(files.fp32_corpus)
        else:
            fp32_model = session(files.fp32, args.threads)
            check("fp32", max_abs_diff(run(corpus[:HEAD], fp32_model), reference))
            fp32 = run(corpus, fp32_model)
            save_npy(files.fp32_corpus, fp32)
        cosine = (out * fp32).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(fp32, axis=1))
        result["cosine_to_fp32"] = float(cosine.mean())
        result["cosine_to_fp32_min"] = float(cosine.min())
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("measurement", choices=["embed", "prepare"])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    parser.add_argument("--onnx-cache", type=Path, help="where the exported models are kept")
    args = parser.parse_args()
    corpus = read_corpus(args.corpus)
    files = Files(args, corpus)
    {"embed": embed, "prepare": prepare}[args.measurement](args, corpus, files)


if __name__ == "__main__":
    main()
