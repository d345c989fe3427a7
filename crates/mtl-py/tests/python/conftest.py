"""Shared fixtures of the Python package's tests (run by crates/mtl-py/tests/python.rs, which
puts the built package on PYTHONPATH and sets MTL_WORKSPACE, MTL_BINARY and MTL_CACHE_DIR)."""

import json
import os
import random
from pathlib import Path

import pytest

WORKSPACE = Path(os.environ.get("MTL_WORKSPACE", Path(__file__).resolve().parents[4]))
FIXTURES = WORKSPACE / "tests" / "fixtures"


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """The tiny random BERT of tests/fixtures (hidden size 32)."""
    return FIXTURES / "tiny-bert"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as `cargo xtask fetch-model` fetches it (MTL_CACHE_DIR)."""
    cache = Path(os.environ.get("MTL_CACHE_DIR", WORKSPACE / ".cache"))
    path = cache / "models" / "all-MiniLM-L6-v2"
    assert (path / "model.safetensors").is_file(), f"{path} is missing: run `cargo xtask fetch-model`"
    return path


# Sentences none of the fixtures were made from: short and long, punctuation, digits, accents
# and other scripts, words outside the vocabulary, an empty string, and one past 256 tokens.
SENTENCES = [
    "The ferry to the island was cancelled because of fog.",
    "Quarterly revenue beat forecasts by 4.2%, shares rose after hours!",
    "i can't believe the game went to overtime again :(",
    "Ceci n'est pas une phrase anglaise, mais elle s'encode quand même.",
    "東京で新しい駅が開業した",
    "zxqv blorptastic unfathomably-hyphenated tokens",
    "",
    "OK",
    "A recipe: two eggs, 200 g flour, a pinch of salt; bake at 180 °C for 25 minutes.",
    " ".join(["the long sentence keeps going and going"] * 60),
]


@pytest.fixture(scope="session")
def sentences() -> list:
    return list(SENTENCES)


def _write_task(directory: Path, classes, train: int, seed: int) -> None:
    rng = random.Random(seed)
    filler = ["the", "a", "of", "to", "and", "in", "is", "it", "on", "that", "this", "with"]
    directory.mkdir(parents=True)
    for split, n in [("train", train), ("valid", train // 4), ("test", train // 4)]:
        with open(directory / f"{split}.jsonl", "w") as f:
            for i in range(n):
                label, cues = classes[rng.randrange(len(classes))]
                words = [rng.choice(cues) for _ in range(1 + rng.randrange(3))]
                words += [rng.choice(filler) for _ in range(1 + rng.randrange(8))]
                rng.shuffle(words)
                f.write(json.dumps({"id": f"{split}-{i}", "text": " ".join(words), "label": label}) + "\n")


@pytest.fixture(scope="session")
def task_data(tmp_path_factory) -> dict:
    """Two small tasks: topic (sport/tech) and sentiment (negative/positive), as directories."""
    root = tmp_path_factory.mktemp("tasks")
    _write_task(root / "topic", [("sport", ["team", "win", "game", "play"]), ("tech", ["phone", "new", "tech", "market"])], 96, 1)
    _write_task(root / "sentiment", [("negative", ["bad", "terrible", "lose"]), ("positive", ["good", "great", "win"])], 160, 2)
    return {"topic": str(root / "topic"), "sentiment": str(root / "sentiment")}


def train_config(tiny_dir: Path, task_data: dict, output: Path, **overrides) -> dict:
    """A short run of the tiny model on the two tasks."""
    config = {
        "model": str(tiny_dir),
        "output": str(output),
        "tasks": [{"name": name, "data": data} for name, data in task_data.items()],
        "epochs": 2,
        "batch_size": 8,
        "max_seq_length": 32,
        "seed": 7,
        "eval_batch_size": 32,
    }
    config.update(overrides)
    return config
