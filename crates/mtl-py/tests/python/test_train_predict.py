"""`mtl.train` makes a model `mtl predict` loads; `MultiTaskClassifier.predict` equals
`mtl predict`; Ctrl-C stops a run resumably; bad configurations raise before anything is written."""

import json
import os
import signal
import subprocess

import numpy as np
import pytest

import mtl
from conftest import train_config


@pytest.fixture(scope="module")
def trained(tiny_dir, task_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    events = []
    summary = mtl.train(train_config(tiny_dir, task_data, run), progress=events.append)
    return run, summary, events


TEXTS = ["the team win the game", "a terrible bad phone", "great new market", "it is on the"]


def test_train_reports_and_summarises(trained):
    run, summary, events = trained
    assert summary["run_dir"] == str(run)
    assert summary["steps"] > 0
    assert {m["task"] for m in summary["test"]} == {"topic", "sentiment"}
    kinds = [e["event"] for e in events]
    assert kinds[0] in ("note", "started") and "started" in kinds
    assert kinds.count("step") == summary["steps"]
    assert "evaluated" in kinds and "checkpoint" in kinds
    assert (run / "best" / "mtl.json").is_file()


def test_predict_equals_mtl_predict(trained):
    run, _, _ = trained
    model = mtl.MultiTaskClassifier(run / "best")
    assert model.tasks == ["topic", "sentiment"]
    ours = model.predict(TEXTS)
    binary = os.environ.get("MTL_BINARY", "mtl")
    assert os.path.isfile(binary), f"{binary} is missing: `cargo test --workspace` builds it"
    output = subprocess.run(
        [binary, "predict", "--format", "jsonl", "--model", str(run / "best"), *TEXTS],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [json.loads(line) for line in output.splitlines()]
    assert [line["text"] for line in lines] == TEXTS
    probabilities = model.predict_proba(TEXTS)
    for i, line in enumerate(lines):
        assert [p["task"] for p in line["predictions"]] == model.tasks
        for cli in line["predictions"]:
            task = cli["task"]
            assert ours[task][i]["label"] == cli["label"]
            # The same float32 probabilities (the CLI prints each float32 exactly).
            assert np.array_equal(np.float32(cli["probabilities"]), probabilities[task][i])
            assert ours[task][i]["score"] == float(np.float32(cli["probabilities"][cli["label_index"]]))


def test_predict_proba(trained):
    run, _, _ = trained
    model = mtl.MultiTaskClassifier(run / "best")
    probabilities = model.predict_proba(TEXTS)
    assert list(probabilities) == ["topic", "sentiment"]
    for task, rows in probabilities.items():
        assert rows.shape == (len(TEXTS), len(model.labels(task)))
        assert np.isfinite(rows).all()
        assert np.allclose(rows.sum(axis=1), 1.0, atol=1e-5)
    one = model.predict_proba(TEXTS, tasks="sentiment")
    assert list(one) == ["sentiment"]
    assert np.array_equal(one["sentiment"], probabilities["sentiment"])
    pairs = model.predict_proba([("the team", "win the game")])
    assert pairs["topic"].shape == (1, 2)
    with pytest.raises(ValueError, match="unknown task"):
        model.predict(TEXTS, tasks="weather")
    assert model.predict([])["topic"] == []


def test_ctrl_c_stops_a_run_that_then_resumes_to_the_same_model(tiny_dir, task_data, trained, tmp_path):
    run = tmp_path / "run"
    config = train_config(tiny_dir, task_data, run)

    def interrupt(event):
        if event["event"] == "step" and event["step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        mtl.train(config, progress=interrupt)
    assert (run / "checkpoint").exists()
    summary = mtl.train(run, resume=True)
    uninterrupted = trained[1]
    assert summary["steps"] == uninterrupted["steps"]
    assert summary["test"] == uninterrupted["test"]
    a = mtl.MultiTaskClassifier(run / "best").predict_proba(TEXTS)
    b = mtl.MultiTaskClassifier(trained[0] / "best").predict_proba(TEXTS)
    for task in a:
        assert np.array_equal(a[task], b[task])


def test_callback_exception_stops_the_run(tiny_dir, task_data, tmp_path):
    def fail(event):
        if event["event"] == "step":
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        mtl.train(train_config(tiny_dir, task_data, tmp_path / "run"), progress=fail)


def test_bad_configurations(tiny_dir, task_data, tmp_path):
    with pytest.raises(ValueError, match="unknown field `epoch_count`"):
        mtl.train(train_config(tiny_dir, task_data, tmp_path / "a", epoch_count=3))
    with pytest.raises(ValueError, match="neither a known data set"):
        mtl.train(train_config(tiny_dir, {"topic": str(tmp_path / "missing")}, tmp_path / "b"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no training file"):
        mtl.train(train_config(tiny_dir, {"topic": str(tmp_path / "empty")}, tmp_path / "b"))
    with pytest.raises(FileNotFoundError, match="nothing.toml"):
        mtl.train(tmp_path / "nothing.toml")
    with pytest.raises(ValueError):
        mtl.train(train_config(tiny_dir, task_data, tmp_path / "c", epochs=0))
    with pytest.raises(TypeError):
        mtl.train(42)
    with pytest.raises(FileNotFoundError, match="not a run directory to resume"):
        mtl.train(tmp_path / "nothing", resume=True)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_train_from_a_toml_file(tiny_dir, task_data, tmp_path):
    path = tmp_path / "run.toml"
    tasks = "\n".join(f'[[tasks]]\nname = "{n}"\ndata = "{d}"' for n, d in task_data.items())
    path.write_text(
        f'model = "{tiny_dir}"\noutput = "{tmp_path / "run"}"\nepochs = 1\nbatch_size = 16\nmax_seq_length = 32\n{tasks}\n'
    )
    summary = mtl.train(path)
    assert summary["steps"] > 0
    assert mtl.MultiTaskClassifier(tmp_path / "run" / "best").tasks == ["topic", "sentiment"]
