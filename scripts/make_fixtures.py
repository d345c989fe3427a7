#!/usr/bin/env python3
"""Writes the reference fixtures that the Rust tests compare against, using HF `transformers`.

Rerun (from the repository root):

    cargo xtask fetch-model          # puts all-MiniLM-L6-v2 in .cache/models/
    python3 scripts/make_fixtures.py # creates .cache/torch-venv on first use

It writes, under tests/fixtures/:

- tiny-bert/: a 2-layer BERT (hidden 32, 4 heads, ffn 64) whose every weight and bias is random,
  with a small WordPiece vocabulary, saved as HF saves it (config.json, model.safetensors,
  tokenizer.json, vocab.txt, tokenizer_config.json), and tiny-bert/reference.{json,safetensors}:
  token ids and outputs (last hidden state, pooler) of a padded batch with a sentence pair, for
  the model's own activation (gelu) and with hidden_act switched to gelu_new and relu.
- tiny-bert-pretraining/: the same encoder inside `BertForPreTraining`, saved as
  pytorch_model.bin: keys carry the `bert.` prefix and the `cls.*` pre-training heads.
- minilm/reference.{json,safetensors}: for all-MiniLM-L6-v2, token ids, last hidden state,
  CLS and pooler outputs of each sentence encoded alone, and the sentence-transformers
  embeddings (mean pooling + L2 normalisation) of every sentence.

The outputs are deterministic for a given torch version (seeded); the versions used are
recorded in each reference.json.

`--check` writes them into a temporary directory instead and compares them with the committed
ones (exits 1 on any difference): the same files, JSON and tokenizer files equal, the random
weights equal bit for bit, and the reference outputs within 1e-5 of each tensor's largest
value (at least 1): torch's CPU kernels differ between instruction sets in the last bits (the
tiny model's pooler outputs, near 1, differed by 1.7e-6 between an AVX-512 and an AVX2
machine). A test runs it
(`committed_fixtures_equal_what_the_script_writes` in
crates/mtl-bert/tests/integration/parity.rs), so CI fails when the fixtures and the script part.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure()

import numpy as np  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import BertConfig, BertForPreTraining, BertModel, BertTokenizerFast  # noqa: E402

ROOT = _venv.ROOT
COMMITTED = ROOT / "tests" / "fixtures"

TINY_WORDS = (
    "the a an of to and in is it on that this with for was as at by be are from or not but "
    "cat dog sat mat hello world question answer good bad movie film great terrible news "
    "sport game play team win lose market price tech phone new old long short text very "
    "why how what who where when he she they we you i my your"
).split()
TINY_PIECES = list("abcdefghijklmnopqrstuvwxyz0123456789")
TINY_PUNCT = list(".,!?;:'\"()-")

TINY_TEXTS = [
    "hello world",
    "The cat sat on the mat.",
    "",
    "Zebras quickly vex jumping wizards!",
    "this movie was very very good, but the news was bad and the market price was terrible",
]
TINY_PAIR = ("why is the sky blue?", "because of rayleigh scattering.")

MINILM_TEXTS = [
    "This is a simple sentence.",
    "Hello, world! How are you -- really?!... (Fine; thanks.)",
    "Café, naïve, résumé, Ångström, façade, Œuvre: accents everywhere.",
    "I love this 😀😀 so much 🎉!",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "",
    "   leading and trailing spaces   ",
    "Numbers like 3.14159, 2,718 and 1e-5 and URLs like example.com/path?q=1.",
    "The quick brown fox jumps over the lazy dog.",
    "CamelCaseWords and snake_case_words and hyphen-ated-words.",
    " ".join(
        "Long text number {i}: sentence embeddings truncate inputs that exceed the "
        "model's maximum sequence length, keeping the final separator token.".format(i=i)
        for i in range(20)
    ),
]


def versions() -> dict:
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Every weight and bias random, so a port that drops or misplaces one fails."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "LayerNorm.weight" in name:
                param.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                param.copy_(0.2 * noise)
            else:
                param.copy_(0.3 * noise)


def write_reference(directory: Path, meta: dict, tensors: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # One key per line, each value on a single line: readable diffs when fixtures change.
    lines = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in meta.items())
    (directory / "reference.json").write_text("{\n" + lines + "\n}\n")
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, str(directory / "reference.safetensors"))


def make_tiny(fixtures: Path) -> None:
    directory = fixtures / "tiny-bert"
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for token in TINY_PUNCT + TINY_WORDS + TINY_PIECES + ["##" + p for p in TINY_PIECES]:
        if token not in vocab:
            vocab.append(token)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(str(directory))
    for extra in ("special_tokens_map.json",):
        (directory / extra).unlink(missing_ok=True)

    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="gelu",
        max_position_embeddings=64,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )
    generator = torch.Generator().manual_seed(20261128)
    model = BertModel(config)
    randomize(model, generator)
    model.eval()
    model.save_pretrained(str(directory), safe_serialization=True)

    pretraining = BertForPreTraining(config)
    randomize(pretraining.cls, generator)
    # After the heads: the MLM decoder's weight is tied to the word embeddings.
    pretraining.bert.load_state_dict(model.state_dict())
    bin_dir = fixtures / "tiny-bert-pretraining"
    pretraining.save_pretrained(str(bin_dir), safe_serialization=False)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (bin_dir / name).write_bytes((directory / name).read_bytes())

    singles = tokenizer(TINY_TEXTS, padding=True, return_tensors="pt")
    pair = tokenizer([TINY_PAIR[0]], [TINY_PAIR[1]], padding=True, return_tensors="pt")
    meta = {
        "versions": versions(),
        "texts": TINY_TEXTS,
        "pair": list(TINY_PAIR),
        "input_ids": singles["input_ids"].tolist(),
        "attention_mask": singles["attention_mask"].tolist(),
        "pair_input_ids": pair["input_ids"][0].tolist(),
        "pair_token_type_ids": pair["token_type_ids"][0].tolist(),
        "activations": ["gelu", "gelu_new", "relu"],
    }
    tensors = {}
    for act in meta["activations"]:
        variant = BertModel(BertConfig(**{**config.to_dict(), "hidden_act": act}))
        variant.load_state_dict(model.state_dict())
        variant.eval()
        with torch.no_grad():
            out = variant(**singles)
            tensors[f"{act}.last_hidden_state"] = out.last_hidden_state
            tensors[f"{act}.pooler_output"] = out.pooler_output
            out = variant(**pair)
            tensors[f"{act}.pair_last_hidden_state"] = out.last_hidden_state[0]
            tensors[f"{act}.pair_pooler_output"] = out.pooler_output[0]
    write_reference(directory, meta, tensors)
    print(f"wrote {directory} and {bin_dir}")


def make_minilm(model_dir: Path, fixtures: Path) -> None:
    from sentence_transformers import SentenceTransformer

    directory = fixtures / "minilm"
    st = SentenceTransformer(str(model_dir), device="cpu")
    max_len = st.max_seq_length
    tokenizer = BertTokenizerFast.from_pretrained(str(model_dir))
    model = BertModel.from_pretrained(str(model_dir)).eval()

    tensors = {}
    ids = []
    for i, text in enumerate(MINILM_TEXTS):
        enc = tokenizer(text, truncation=True, max_length=max_len, return_tensors="pt")
        ids.append(enc["input_ids"][0].tolist())
        with torch.no_grad():
            out = model(**enc)
        tensors[f"{i}.last_hidden_state"] = out.last_hidden_state[0]
        tensors[f"{i}.cls"] = out.last_hidden_state[0, 0].clone()
        tensors[f"{i}.pooler_output"] = out.pooler_output[0]
    embeddings = st.encode(MINILM_TEXTS, batch_size=4, normalize_embeddings=True, convert_to_numpy=True)
    tensors["mean_normalized"] = torch.from_numpy(np.ascontiguousarray(embeddings))
    meta = {"versions": versions(), "max_seq_length": max_len, "texts": MINILM_TEXTS, "input_ids": ids}
    write_reference(directory, meta, tensors)
    print(f"wrote {directory} ({len(MINILM_TEXTS)} sentences, longest {max(map(len, ids))} tokens)")


def tensors_of(path: Path) -> dict:
    if path.suffix == ".bin":
        return torch.load(str(path), map_location="cpu", weights_only=True)
    from safetensors.torch import load_file

    return load_file(str(path))


def compare(committed: Path, fresh: Path) -> list:
    """The differences between the committed fixtures and freshly written ones."""
    problems = []
    names = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    if names(committed) != names(fresh):
        problems.append(f"files differ: committed {names(committed)}, written {names(fresh)}")
    for name in names(committed):
        a, b = committed / name, fresh / name
        if not b.exists():
            continue
        if a.suffix in (".safetensors", ".bin"):
            ta, tb = tensors_of(a), tensors_of(b)
            if sorted(ta) != sorted(tb):
                problems.append(f"{name}: tensor names differ")
                continue
            reference = a.name.startswith("reference.")
            for key in sorted(ta):
                x, y = ta[key].float(), tb[key].float()
                if x.shape != y.shape:
                    problems.append(f"{name} {key}: shape {tuple(x.shape)} vs {tuple(y.shape)}")
                elif not (torch.isfinite(x).all() and torch.isfinite(y).all()):
                    problems.append(f"{name} {key}: not finite")
                elif reference:
                    scale = max(1.0, x.abs().max().item())
                    diff = (x - y).abs().max().item() if x.numel() else 0.0
                    if diff > 1e-5 * scale:
                        problems.append(f"{name} {key}: differs by {diff:.2e} (largest value {scale:.2e})")
                elif not torch.equal(ta[key], tb[key]):
                    problems.append(f"{name} {key}: weights differ")
        elif a.suffix == ".json":
            if json.loads(a.read_text()) != json.loads(b.read_text()):
                problems.append(f"{name}: JSON differs")
        elif a.read_bytes() != b.read_bytes():
            problems.append(f"{name}: bytes differ")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / ".cache" / "models" / "all-MiniLM-L6-v2",
                        help="all-MiniLM-L6-v2 directory (default: the one `cargo xtask fetch-model` writes)")
    parser.add_argument("--check", action="store_true",
                        help="write into a temporary directory and compare with tests/fixtures")
    args = parser.parse_args()
    if not (args.model / "model.safetensors").exists():
        sys.exit(f"{args.model} has no model.safetensors: run `cargo xtask fetch-model` first")
    with tempfile.TemporaryDirectory() as temporary:
        fixtures = Path(temporary) if args.check else COMMITTED
        torch.manual_seed(0)
        make_tiny(fixtures)
        make_minilm(args.model, fixtures)
        if args.check:
            problems = compare(COMMITTED, fixtures)
            for problem in problems:
                print(f"fixtures: {problem}", file=sys.stderr)
            if problems:
                sys.exit(f"{len(problems)} differences: rerun scripts/make_fixtures.py and review the diff")
            print(f"the committed fixtures equal what {Path(__file__).name} writes")


if __name__ == "__main__":
    main()
