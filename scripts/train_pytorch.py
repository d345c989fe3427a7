#!/usr/bin/env python3
"""Trains the PyTorch (HF `transformers`) twin of a `mtl train` run, on exactly the same batches.

    python3 scripts/train_pytorch.py runs/default [--threads 2]

It reads the run directory that `mtl train` wrote: `config.toml` (hyper-parameters),
`plan.jsonl` (the example ids of every batch, in order), `init_heads.safetensors` (the heads'
initial weights) and `best/mtl.json` (tasks and labels), plus the model and data sets they name.
It then trains BertModel + dropout + the same heads the same way: masked mean pooling,
cross-entropy per task times its weight, AdamW (eps 1e-8, weight decay 0.01 except biases and
LayerNorm), separate encoder / head learning rates with layer-wise decay, linear warmup then
linear decay (`get_linear_schedule_with_warmup`), clipping at the global gradient norm,
evaluation on the validation split after every epoch keeping the best mean macro-F1, and a final
test evaluation of the best model. Results go to `<run>/pytorch/summary.json`.

Only what the comparison needs is supported: step mode `task`, no gradient accumulation, no
freezing other than `encoder`, no gradual unfreezing; anything else is refused.
"""

import argparse
import copy
import json
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure()

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import BertModel, BertTokenizerFast, get_linear_schedule_with_warmup  # noqa: E402

ROOT = _venv.ROOT
DATASETS = {"bbc", "tweets", "polarity", "amazon"}


class Head(torch.nn.Module):
    def __init__(self, kind: dict, hidden: int, labels: int, dropout: float):
        super().__init__()
        width = kind.get("width") if kind.get("kind") == "mlp" else None
        self.hidden = torch.nn.Linear(hidden, width) if width else None
        self.dropout = torch.nn.Dropout(dropout)
        self.output = torch.nn.Linear(width or hidden, labels)

    def forward(self, x):
        if self.hidden is not None:
            x = self.dropout(torch.tanh(self.hidden(x)))
        return self.output(x)


class MultiTask(torch.nn.Module):
    def __init__(self, encoder: BertModel, tasks: list, specs: list, dropout: float, pooling: str):
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        self.heads = torch.nn.ModuleList(
            Head(spec.get("head", {"kind": "linear"}), hidden, len(task["labels"]), dropout)
            for task, spec in zip(tasks, specs)
        )
        self.pooling = pooling

    def pooled(self, input_ids, attention_mask):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "pooler":
            return out.pooler_output
        if self.pooling == "max":
            return hidden.masked_fill(attention_mask.unsqueeze(-1) == 0, -1e9).max(1).values
        raise SystemExit(f"unknown pooling {self.pooling}")

    def forward(self, input_ids, attention_mask, task):
        return self.heads[task](self.dropout(self.pooled(input_ids, attention_mask)))


def read_split(directory: Path, split: str, labels: list) -> dict:
    index = {label: i for i, label in enumerate(labels)}
    rows = {}
    for line in (directory / f"{split}.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["id"]] = (row["text"], index[str(row["label"])])
    return rows


def data_dir(spec: dict) -> Path:
    data = spec["data"]
    path = Path(data)
    if data in DATASETS and not path.is_dir():
        return ROOT / "datasets" / data
    return path


def macro_f1(truth: list, predicted: list) -> float:
    classes = sorted(set(truth) | set(predicted))
    scores = []
    for c in classes:
        tp = sum(1 for t, p in zip(truth, predicted) if t == c and p == c)
        fp = sum(1 for t, p in zip(truth, predicted) if t != c and p == c)
        fn = sum(1 for t, p in zip(truth, predicted) if t == c and p != c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


@torch.no_grad()
def evaluate(model, tokenizer, rows: dict, task: int, max_len: int, batch_size: int) -> dict:
    model.eval()
    items = sorted(rows.values(), key=lambda r: len(r[0]))
    truth, predicted, loss = [], [], 0.0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        enc = tokenizer([t for t, _ in chunk], truncation=True, max_length=max_len, padding=True, return_tensors="pt")
        logits = model(enc["input_ids"], enc["attention_mask"], task)
        labels = torch.tensor([y for _, y in chunk])
        loss += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        truth += labels.tolist()
        predicted += logits.argmax(1).tolist()
    n = len(truth)
    return {
        "examples": n,
        "loss": loss / n,
        "accuracy": sum(1 for t, p in zip(truth, predicted) if t == p) / n,
        "macro_f1": macro_f1(truth, predicted),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory written by `mtl train`")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = tomllib.loads((args.run / "config.toml").read_text())
    mtl = json.loads((args.run / "best" / "mtl.json").read_text())
    if config.get("step_mode", "task") != "task" or config.get("grad_accumulation", 1) != 1:
        raise SystemExit("only step_mode task without gradient accumulation is supported")
    if config.get("unfreeze_every") or set(config.get("freeze", [])) - {"none", "encoder"}:
        raise SystemExit("only --freeze encoder is supported")
    freeze_encoder = "encoder" in config.get("freeze", [])
    model_dir = Path(config["model"])
    if config["model"] == "default":
        model_dir = ROOT / ".cache" / "models" / "all-MiniLM-L6-v2"
    tasks, specs = mtl["tasks"], config["tasks"]
    max_len = config["max_seq_length"]

    tokenizer = BertTokenizerFast.from_pretrained(str(model_dir))
    encoder = BertModel.from_pretrained(str(model_dir))
    model = MultiTask(encoder, tasks, specs, config["dropout"], config["pooling"])
    initial = load_file(str(args.run / "init_heads.safetensors"))
    for i, task in enumerate(tasks):
        prefix = f"heads.{task['name']}."
        model.heads[i].load_state_dict({k[len(prefix) :]: v for k, v in initial.items() if k.startswith(prefix)})
    if freeze_encoder:
        for p in model.encoder.parameters():
            p.requires_grad_(False)

    layers = encoder.config.num_hidden_layers
    decay = config["layer_lr_decay"]

    def peak_lr(name: str) -> float:
        if not name.startswith("encoder."):
            return config["head_lr"]
        if name.startswith("encoder.embeddings."):
            depth = layers
        elif name.startswith("encoder.encoder.layer."):
            depth = layers - 1 - int(name.split(".")[3])
        else:
            depth = 0
        return config["encoder_lr"] * decay**depth

    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = name.endswith(".bias") or "LayerNorm" in name
        key = (peak_lr(name), 0.0 if no_decay else config["weight_decay"])
        groups.setdefault(key, []).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()], eps=1e-8
    )

    plan = [json.loads(l) for l in (args.run / "plan.jsonl").read_text().splitlines()]
    total = len(plan)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config["warmup_ratio"] * total), total)
    names = [t["name"] for t in tasks]
    train_rows = [read_split(data_dir(s), "train", t["labels"]) for t, s in zip(tasks, specs)]
    valid_rows = [read_split(data_dir(s), "valid", t["labels"]) for t, s in zip(tasks, specs)]
    test_rows = [read_split(data_dir(s), "test", t["labels"]) for t, s in zip(tasks, specs)]
    weights = [s.get("weight", 1.0) for s in specs]
    eval_batch = config.get("eval_batch_size", 64)

    out_dir = args.run / "pytorch"
    out_dir.mkdir(exist_ok=True)
    log = open(out_dir / "metrics.jsonl", "w")
    best, best_state, best_valid = None, None, None
    started = time.time()
    def train_mode():
        model.train()
        if freeze_encoder:
            model.encoder.eval()  # as Burn's freeze(): no dropout in a frozen encoder

    epochs = sorted({b["epoch"] for b in plan})
    for epoch in epochs:
        train_mode()
        for step_in_epoch, batch in enumerate(b for b in plan if b["epoch"] == epoch):
            task = names.index(batch["task"])
            chunk = [train_rows[task][i] for i in batch["ids"]]
            enc = tokenizer([t for t, _ in chunk], truncation=True, max_length=max_len, padding=True, return_tensors="pt")
            logits = model(enc["input_ids"], enc["attention_mask"], task)
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([y for _, y in chunk])) * weights[task]
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            if not torch.isfinite(loss):
                raise SystemExit(f"epoch {epoch} batch {step_in_epoch}: non-finite loss")
        valid = [dict(task=n, **evaluate(model, tokenizer, r, i, max_len, eval_batch)) for i, (n, r) in enumerate(zip(names, valid_rows))]
        score = sum(v["macro_f1"] for v in valid) / len(valid)
        log.write(json.dumps({"epoch": epoch, "seconds": time.time() - started, "valid": valid}) + "\n")
        log.flush()
        print(f"epoch {epoch + 1}: " + ", ".join(f"{v['task']} acc {v['accuracy']:.4f} F1 {v['macro_f1']:.4f}" for v in valid), file=sys.stderr)
        if best is None or score > best:
            best, best_state, best_valid = score, copy.deepcopy(model.state_dict()), valid
    train_seconds = time.time() - started
    model.load_state_dict(best_state)
    test = [dict(task=n, **evaluate(model, tokenizer, r, i, max_len, eval_batch)) for i, (n, r) in enumerate(zip(names, test_rows))]
    summary = {
        "torch": torch.__version__,
        "threads": args.threads,
        "steps": total,
        "train_seconds": train_seconds,
        "best_score": best,
        "valid": best_valid,
        "test": test,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for t in test:
        print(f"test {t['task']}: accuracy {t['accuracy']:.4f} macro-F1 {t['macro_f1']:.4f}", file=sys.stderr)
    print(f"{total} steps in {train_seconds:.0f} s; wrote {out_dir / 'summary.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
