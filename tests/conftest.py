"""Test set-up: eight fake CPU devices (set before JAX is imported) so mesh tests run anywhere; JAX's persistent
compilation cache; and shared data fixtures: tokenizers trained on the built-in corpus (SentencePiece, and an
uncased WordPiece folder), and prepared shards of part of it."""

import os
import pathlib

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Compiled programs are kept in .jax_cache/ of the checkout (git-ignored) and reused by the next run: compiling
# is most of the suite's time, and a warm cache runs test_model.py and test_speed.py 3.6 times as fast (a
# cold one costs nothing measurable). Set as environment variables, so that the tools the tests run as
# subprocesses share the cache; every program is kept, however fast it compiled (the whole suite's take some
# 30 MB). No size limit: JAX's eviction races between processes and warns. Delete the folder to empty it;
# JAX_COMPILATION_CACHE_DIR= (empty) turns the cache off.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path(__file__).resolve().parents[1] / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import itertools  # noqa: E402

import pytest  # noqa: E402

from bertjax.data import corpus, shards, tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def builtin_documents():
    return list(corpus.read_builtin())


@pytest.fixture(scope="session")
def sp_tokenizer_path(tmp_path_factory, builtin_documents):
    path = tmp_path_factory.mktemp("tokenizer") / "builtin.model"
    sentences = itertools.chain.from_iterable(builtin_documents)
    tokenizer.train_sentencepiece(sentences, vocab_size=4000).save(path)
    return path


@pytest.fixture(scope="session")
def sp_tokenizer(sp_tokenizer_path):
    return tokenizer.load_tokenizer(sp_tokenizer_path)


# Text the built-in corpus (English docstrings) lacks: accents, CJK, Greek and Cyrillic, in both cases.
MULTILINGUAL = ("Café déjà vu: a naïve façade in São Paulo, Ångström units.", "Größe, Übermaß und Straße in München.",
                "東京は日本の首都です。北京是中国的首都。", "Ελληνικά: η Αθήνα και η ΘΕΣΣΑΛΟΝΙΚΗ.",
                "Русский текст: Москва и САНКТ-ПЕТЕРБУРГ.")


def wordpiece_sentences(builtin_documents, count=4000):
    """What the tests train WordPiece on: the built-in corpus's first sentences and MULTILINGUAL, each line
    often enough (min_frequency 2) that its characters and words make pieces."""
    return [*MULTILINGUAL * 3, *itertools.islice(itertools.chain.from_iterable(builtin_documents), count)]


@pytest.fixture(scope="session")
def wordpiece_dir(tmp_path_factory, builtin_documents):
    """An uncased 1,200-piece WordPiece tokenizer as the folder tools/train_tokenizer.py writes."""
    folder = tmp_path_factory.mktemp("wordpiece") / "uncased"
    folder.mkdir()
    trained = tokenizer.train_wordpiece(wordpiece_sentences(builtin_documents), vocab_size=1200)
    tokenizer.save_hf_tokenizer(trained, folder)
    return folder


def write_bert_text(path, documents):
    path.write_text("\n\n".join("\n".join(document) for document in documents) + "\n")
    return path


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, builtin_documents):
    return write_bert_text(tmp_path_factory.mktemp("corpus") / "part.txt", builtin_documents[:600])


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory, corpus_file, sp_tokenizer_path):
    output = tmp_path_factory.mktemp("prepared") / "data"
    shards.prepare(corpus.read_text_files([corpus_file]), sp_tokenizer_path, output, documents_per_shard=100,
                   validation_fraction=0.1, num_workers=2)
    return output


def tiny_pretraining_config(prepared_dir, sp_tokenizer_path, **train_overrides):
    """A BERT of hidden size 32 on the shared prepared shards, in short runs: the config the loop's tests use."""
    from bertjax.configs import common

    config = common.get_config()
    config.model.variant = "tiny"
    config.model.update(vocab_size=4000, hidden_size=32, num_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    config.data.update(tokenizer=str(sp_tokenizer_path), prepared_dir=str(prepared_dir), max_seq_length=64,
                       max_predictions_per_seq=10)
    config.optim.update(learning_rate=1e-3, warmup_steps=2)
    config.train.update(num_steps=6, global_batch_size=8, eval_batch_size=16, log_every=2, eval_every=3,
                        checkpoint_every=3, keep_checkpoints=5)
    config.train.update(**train_overrides)
    return config


@pytest.fixture(scope="session")
def tiny_pretraining_run(tmp_path_factory, prepared_dir, sp_tokenizer_path):
    """A finished three-step pretraining run of `tiny_pretraining_config` with its one checkpoint, shared by
    the tests that start from a run (read it; never write into it)."""
    from bertjax import train
    from bertjax.tasks.pretraining import PretrainingTask

    config = tiny_pretraining_config(prepared_dir, sp_tokenizer_path, num_steps=3, eval_every=0, checkpoint_every=3)
    workdir = tmp_path_factory.mktemp("tiny_pretraining_run") / "run"
    train.train_and_evaluate(config, workdir, PretrainingTask(config))
    return workdir
