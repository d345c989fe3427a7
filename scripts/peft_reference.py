#!/usr/bin/env python3
"""Hugging Face PEFT's outputs for an adapter of ours: the reference of our LoRA adapters.

Reads JSON from standard input, `{"model": DIR, "adapter": DIR, "texts": [...]}`: a BERT model
directory and a LoRA adapter directory in PEFT's format (`adapter_config.json`,
`adapter_model.safetensors`) written by mtl for that model. Loads the model with
`transformers.BertModel`, puts the adapter on it with `peft.PeftModel.from_pretrained`, and
writes the padded batch's `input_ids` and last hidden states (float32, eval mode), then the same
after `merge_and_unload()` (the adapter merged into the weights). Run with the reference
environment's interpreter (`scripts/_venv.py`);
crates/mtl-bert/tests/integration/peft.rs does, and compares ours with it.
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure()

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoTokenizer, BertModel  # noqa: E402


def main() -> None:
    request = json.load(sys.stdin)
    tokenizer = AutoTokenizer.from_pretrained(request["model"])
    base = BertModel.from_pretrained(request["model"], attn_implementation="eager")
    model = PeftModel.from_pretrained(base, request["adapter"]).eval()
    batch = tokenizer(request["texts"], padding=True, return_tensors="pt")
    with torch.no_grad():
        adapted = model(**batch).last_hidden_state
        merged = model.merge_and_unload()(**batch).last_hidden_state
    json.dump(
        {
            "peft": version("peft"),
            "input_ids": batch["input_ids"].tolist(),
            "adapted": adapted.tolist(),
            "merged": merged.tolist(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
