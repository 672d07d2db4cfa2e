"""The data tools as a user runs them: train a tokenizer, prepare shards, look at a batch; errors in one line."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(tool, *args):
    return subprocess.run([sys.executable, f"tools/{tool}.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, builtin_documents):
    path = tmp_path_factory.mktemp("tools") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(document) for document in builtin_documents[:400]) + "\n")
    return path


def test_train_prepare_and_show(corpus_file, tmp_path):
    model, prepared = tmp_path / "tok", tmp_path / "data"
    result = _run("train_tokenizer", f"--corpus=text:{corpus_file}", f"--output_dir={model}", "--vocab_size=600")
    assert result.returncode == 0, result.stderr
    assert "600 pieces" in result.stdout and (model / "tokenizer.model").is_file()

    result = _run("prepare_data", f"--corpus=text:{corpus_file}", f"--tokenizer={model}", f"--output_dir={prepared}",
                  "--validation_fraction=0.1", "--num_workers=1")
    assert result.returncode == 0, result.stderr
    metadata = json.loads((prepared / "metadata.json").read_text())
    assert metadata["splits"]["train"]["documents"] + metadata["splits"]["validation"]["documents"] == 400

    result = _run("show_batch", "--config=bert_tiny", f"--config.data.tokenizer={model}",
                  f"--config.data.prepared_dir={prepared}", "--config.data.sentence_task=sop", "--batches=5")
    assert result.returncode == 0, result.stderr
    assert "[CLS]" in result.stdout and "[MASK]" in result.stdout and "sentence task sop" in result.stdout

    # Input errors are one line naming what to fix, not a traceback.
    result = _run("prepare_data", f"--corpus=text:{corpus_file}", f"--tokenizer={model}", f"--output_dir={prepared}")
    assert result.returncode == 1 and "--overwrite" in result.stderr and "Traceback" not in result.stderr
    result = _run("prepare_data", f"--tokenizer={tmp_path / 'none.model'}", f"--output_dir={tmp_path / 'x'}")
    assert result.returncode == 1 and "none.model not found" in result.stderr
    result = _run("show_batch", "--config=bert_tiny", f"--config.data.tokenizer={model}",
                  f"--config.data.prepared_dir={tmp_path}")
    assert result.returncode == 1 and "bertjax prepare_data" in result.stderr


def test_train_a_wordpiece_folder_and_prepare_with_it(corpus_file, tmp_path):
    from bertjax.data import tokenizer

    folder = tmp_path / "wordpiece"
    result = _run("train_tokenizer", f"--corpus=text:{corpus_file}", f"--output_dir={folder}", "--vocab_size=600",
                  "--model_type=wordpiece", "--cased")
    assert result.returncode == 0, result.stderr
    assert "600 pieces (wordpiece, cased" in result.stdout and f"--tokenizer {folder}" in result.stdout
    assert json.loads((folder / "tokenizer_config.json").read_text())["do_lower_case"] is False
    assert sorted(path.name for path in tmp_path.iterdir()) == ["wordpiece"]  # nothing partial left beside it

    # The folder's vocab.txt read lower-cased, as --lowercase asks: the shards record that tokenizer.
    vocab, prepared = folder / "vocab.txt", tmp_path / "data"
    result = _run("prepare_data", f"--corpus=text:{corpus_file}", f"--tokenizer={vocab}", f"--output_dir={prepared}",
                  "--num_workers=1", "--lowercase")
    assert result.returncode == 0, result.stderr
    recorded = json.loads((prepared / "metadata.json").read_text())["tokenizer_fingerprint"]
    assert recorded == tokenizer.load_tokenizer(vocab, lowercase=True).fingerprint
    assert recorded != tokenizer.load_tokenizer(vocab).fingerprint
    result = _run("prepare_data", f"--corpus=text:{corpus_file}", f"--tokenizer={folder}",
                  f"--output_dir={tmp_path / 'other'}", "--lowercase")
    assert result.returncode == 1 and "contradicts" in result.stderr and "Traceback" not in result.stderr

    result = _run("train_tokenizer", f"--corpus=text:{corpus_file}", f"--output_dir={prepared}", "--model_type=wordpiece")
    assert result.returncode == 1 and "is not a tokenizer folder" in result.stderr
    result = _run("train_tokenizer", f"--corpus=text:{corpus_file}", f"--output_dir={tmp_path / 'x'}", "--cased")
    assert result.returncode == 1 and "--cased is for --model_type wordpiece" in result.stderr


def test_prepare_glue_from_zip_files_and_finetune_errors(tmp_path):
    import zipfile

    import glue_fixtures

    extracted = glue_fixtures.write_glue(tmp_path / "extracted")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for folder in ("SST-2", "RTE"):  # as GLUE distributes them: one zip per task, holding the task's folder
        with zipfile.ZipFile(downloads / f"{folder}.zip", "w") as archive:
            for path in sorted((extracted / folder).iterdir()):
                archive.write(path, f"{folder}/{path.name}")
    result = _run("prepare_glue", f"--glue_dir={downloads}", f"--output_dir={tmp_path / 'tfds'}")
    assert result.returncode == 0, result.stderr
    assert "glue/sst2" in result.stdout and "glue/rte" in result.stdout and "glue/cola" not in result.stdout
    import tensorflow_datasets as tfds
    from tensorflow_datasets.text import glue  # noqa: F401

    source = tfds.data_source("glue/rte", split="validation", data_dir=str(tmp_path / "tfds"))
    assert len(source) == 13 and {int(source[i]["label"]) for i in range(len(source))} == {0, 1}

    result = _run("prepare_glue", f"--glue_dir={downloads}", f"--output_dir={tmp_path / 'tfds'}", "--tasks=sst3")
    assert result.returncode == 1 and "unknown task(s) ['sst3']" in result.stderr
    result = _run("finetune", "--config=glue:task=sst2", f"--workdir={tmp_path / 'run'}",
                  f"--config.train.init_checkpoint={tmp_path / 'nothing'}")
    assert result.returncode == 1 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    result = _run("finetune", "--config=glue:task=glue9", f"--workdir={tmp_path / 'run'}",
                  "--config.model.variant=tiny", "--config.data.tokenizer=none.model")
    assert result.returncode == 1 and "finetune.task='glue9'" in result.stderr


def test_prepare_data_names_wrong_input_and_never_leaves_validation_empty(corpus_file, sp_tokenizer_path, tmp_path):
    records = tmp_path / "corpus.jsonl"
    records.write_text("".join(json.dumps({"id": i, "body": f"Document number {i}. It has two sentences."}) + "\n"
                               for i in range(30)))
    (tmp_path / "dev.jsonl").write_text(json.dumps({"body": "Held out. For validation."}) + "\n")
    prepared = tmp_path / "data"

    def prepare(*args):
        return _run("prepare_data", f"--tokenizer={sp_tokenizer_path}", f"--output_dir={prepared}",
                    "--num_workers=1", *args)

    for args, message in [
        ([f"--corpus=text:{records}"], f"{records} is JSON lines, not text for text:; read it with jsonl:{records}"),
        ([f"--corpus=jsonl:{records}"], f"{records}, line 1: no field 'text'; it has 'body', 'id'"),
        ([f"--corpus=jsonl:{records}:body", "--validation_fraction=0"], "the validation split is empty"),
        ([f"--corpus=jsonl:{records}:body", "--validation_fraction=-0.5"], "validation_fraction=-0.5"),
    ]:
        result = prepare(*args)
        flag = "=-0.5" in args[-1]  # refused by the flag's bounds: a usage error, with the --help hint
        assert result.returncode == (2 if flag else 1) and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 + flag and not prepared.exists()

    result = prepare(f"--corpus=jsonl:{records}:body", f"--validation_corpus=jsonl:{tmp_path / 'dev.jsonl'}:body")
    assert result.returncode == 0, result.stderr
    metadata = json.loads((prepared / "metadata.json").read_text())
    assert [metadata["splits"][split]["documents"] for split in ("train", "validation")] == [30, 1]

    # Accepted with a loud warning, the shards are then refused by pretraining before it compiles anything.
    result = prepare(f"--corpus=jsonl:{records}:body", "--validation_fraction=0", "--allow_empty_validation",
                     "--overwrite")
    assert result.returncode == 0 and "WARNING" in result.stderr and "validation split is empty" in result.stderr
    result = _run("pretrain", "--config=bert_tiny", f"--workdir={tmp_path / 'run'}",
                  f"--config.data.tokenizer={sp_tokenizer_path}", f"--config.data.prepared_dir={prepared}",
                  "--config.model.vocab_size=4000")
    assert result.returncode == 1 and "Split 'validation'" in result.stderr and "holds no documents" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_preparation_killed_midway_leaves_no_shards_and_reruns_to_the_same_result(builtin_documents,
                                                                                   sp_tokenizer_path, tmp_path):
    import signal
    import time

    from bertjax.data import corpus, shards

    corpus_path = tmp_path / "corpus.txt"
    corpus_path.write_text("\n\n".join("\n".join(document) for document in builtin_documents * 2) + "\n")
    prepared, reference = tmp_path / "data", tmp_path / "reference"
    args = [sys.executable, "tools/prepare_data.py", f"--corpus=text:{corpus_path}", f"--tokenizer={sp_tokenizer_path}",
            f"--output_dir={prepared}", "--documents_per_shard=200", "--num_workers=1"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / "data.partial"
    deadline = time.monotonic() + 120
    while len(list(partial.glob("train-*.array_record"))) < 3 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # midway: shards written, others to come
    process.wait()
    assert process.returncode == -signal.SIGKILL and not prepared.exists()

    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not partial.exists()
    shards.prepare(corpus.read_text_files([corpus_path]), sp_tokenizer_path, reference, documents_per_shard=200,
                   validation_fraction=0.02, num_workers=2)
    written = sorted(str(path.relative_to(prepared)) for path in prepared.rglob("*") if path.is_file())
    assert written == sorted(str(path.relative_to(reference)) for path in reference.rglob("*") if path.is_file())
    assert len(written) > 10
    for name in written:
        if name != "metadata.json":
            assert (prepared / name).read_bytes() == (reference / name).read_bytes(), name
