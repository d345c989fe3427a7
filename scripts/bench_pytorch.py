#!/usr/bin/env python3
"""The PyTorch side of `cargo xtask bench --with-pytorch`: one measurement per process, printed
as one JSON line with the same keys as `mtl-bench`.

    python3 scripts/bench_pytorch.py embed --corpus FILE --model DIR --batch-size 32 [--threads 2]

- embed: sentence-transformers `encode` of the corpus (mean pooling, normalised), texts/s.
- finetune: full fine-tuning steps of BertModel + mean pooling + a 3-class linear head (AdamW,
  cross-entropy, global-norm clipping, batches of consecutive texts, labels i % 3), examples/s
  over the timed steps (after 2 untimed ones).
- frozen: one epoch over the corpus with the encoder frozen: the encoder runs under no_grad in
  every step (PyTorch has no embedding cache) and the head trains, examples/s.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure()

import torch  # noqa: E402


def mean_pool(hidden, mask):
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def embed(args, corpus):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(args.model), device="cpu")
    model.encode(corpus[:64], batch_size=args.batch_size)
    started = time.perf_counter()
    out = model.encode(corpus, batch_size=args.batch_size, normalize_embeddings=True)
    return len(out), time.perf_counter() - started


def setup(args):
    from transformers import BertModel, BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(args.model))
    encoder = BertModel.from_pretrained(str(args.model))
    head = torch.nn.Linear(encoder.config.hidden_size, 3)
    return tokenizer, encoder, head


def batches(tokenizer, corpus, args):
    for b in range(0, len(corpus), args.batch_size):
        texts = corpus[b : b + args.batch_size]
        enc = tokenizer(texts, truncation=True, max_length=args.max_seq_length, padding=True, return_tensors="pt")
        yield enc, torch.tensor([(b + i) % 3 for i in range(len(texts))])


def finetune(args, corpus):
    tokenizer, encoder, head = setup(args)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-5, eps=1e-8, weight_decay=0.01)
    dropout = torch.nn.Dropout(0.1)
    encoder.train()
    data = list(batches(tokenizer, corpus, args))
    examples, started = 0, time.perf_counter()
    for step in range(args.steps + 2):
        if step == 2:
            examples, started = 0, time.perf_counter()
        enc, labels = data[step % len(data)]
        hidden = encoder(**enc).last_hidden_state
        logits = head(dropout(mean_pool(hidden, enc["attention_mask"])))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.item()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        examples += len(labels)
    return examples, time.perf_counter() - started


def frozen(args, corpus):
    tokenizer, encoder, head = setup(args)
    encoder.eval()
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, eps=1e-8, weight_decay=0.01)
    dropout = torch.nn.Dropout(0.1)
    started = time.perf_counter()
    for enc, labels in batches(tokenizer, corpus, args):
        with torch.no_grad():
            pooled = mean_pool(encoder(**enc).last_hidden_state, enc["attention_mask"])
        loss = torch.nn.functional.cross_entropy(head(dropout(pooled)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return len(corpus), time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("measurement", choices=["embed", "finetune", "frozen"])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    corpus = args.corpus.read_text().splitlines()
    examples, seconds = {"embed": embed, "finetune": finetune, "frozen": frozen}[args.measurement](args, corpus)
    print(json.dumps({
        "measurement": args.measurement,
        "batch_size": args.batch_size,
        "examples": examples,
        "seconds": seconds,
        "throughput": examples / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
