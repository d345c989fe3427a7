#!/usr/bin/env python3
"""Prints docs/RESULTS.md's transfer-learning tables from `scripts/experiments.sh transfer`'s
runs: each run's `summary.json` (training and embedding-cache seconds) and `test.json`
(`mtl eval --json` of its best model on the test split of every task it has).

Usage: scripts/transfer_tables.py [RUNS_DIR]   (default: runs/transfer)
"""

import json
import sys
from pathlib import Path

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/transfer")


def scores(name):
    """{task: (accuracy, macro_f1)} of a run's best model on the test splits."""
    tests = json.loads((runs / name / "test.json").read_text())
    return {t["task"]: (t["accuracy"], t["macro_f1"]) for t in tests}


def seconds(name):
    summary = json.loads((runs / name / "summary.json").read_text())
    train = summary["train_seconds"]
    cache = summary.get("cache_seconds", 0.0)
    if summary.get("cached_embeddings"):
        return f"{cache:,.0f} s embedding + {train:,.0f} s heads"
    return f"{train:,.0f} s"


def cell(name, task):
    s = scores(name).get(task)
    return f"{s[0]:.4f} / {s[1]:.4f}" if s else ""


def change(before, after, task):
    (a, _), (b, _) = scores(before)[task], scores(after)[task]
    return f"{(b - a) * 100:+.2f}"


print("| run | flags | topic acc / F1 | sentiment acc / F1 | training time |")
print("|---|---|---|---|---|")
for name, flags in [
    ("full", "(none)"),
    ("freeze-embeddings", "`--freeze embeddings`"),
    ("freeze-layers-3", "`--freeze layers:3`"),
    ("freeze-encoder", "`--freeze encoder`"),
    ("gradual", "`--unfreeze-every 1`"),
    ("layer-lr-0.9", "`--layer-lr-decay 0.9`"),
]:
    print(f"| {name} | {flags} | {cell(name, 'topic')} | {cell(name, 'sentiment')} | {seconds(name)} |")

print()
print("| run | topic acc / F1 | topic change (points) | sentiment acc / F1 | training time |")
print("|---|---|---|---|---|")
print(f"| topic alone | {cell('topic', 'topic')} | | | {seconds('topic')} |")
for name in ["topic+sentiment", "topic+sentiment-frozen", "topic+sentiment-joint", "full"]:
    print(
        f"| {name} | {cell(name, 'topic')} | {change('topic', name, 'topic') if name != 'full' else ''} "
        f"| {cell(name, 'sentiment')} | {seconds(name)} |"
    )

print()
print(
    "| run | polarity acc / F1 | topic acc / F1 (change) | sentiment acc / F1 (change) "
    "| training time |"
)
print("|---|---|---|---|---|")
print(f"| full (before) | | {cell('full', 'topic')} | {cell('full', 'sentiment')} | |")
for name in ["full+polarity", "full+polarity-frozen"]:
    print(
        f"| {name} | {cell(name, 'polarity')} "
        f"| {cell(name, 'topic')} ({change('full', name, 'topic')}) "
        f"| {cell(name, 'sentiment')} ({change('full', name, 'sentiment')}) | {seconds(name)} |"
    )
