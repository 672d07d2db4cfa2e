"""Layer combinations and pooling are what their names say; feature files read back as a direct forward pass."""

import itertools
import json
import os
import pathlib
import subprocess
import sys
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import convert, features
from bertjax.data import tokenizer
from bertjax.model import BertConfig, BertModel

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _hidden_states(count=5, shape=(2, 3, 4)):
    rng = np.random.default_rng(0)
    return tuple(rng.normal(size=shape).astype(np.float32) for _ in range(count))


def test_named_combinations_by_hand():
    hidden = _hidden_states()
    expected = {
        "embeddings": hidden[0], "first": hidden[1], "last": hidden[4], "second_to_last": hidden[3],
        "sum_last_four": hidden[1] + hidden[2] + hidden[3] + hidden[4],
        "concat_last_four": np.concatenate(hidden[1:], axis=-1),
        "mean_all": (hidden[1] + hidden[2] + hidden[3] + hidden[4]) / 4,
    }
    assert set(expected) == set(features.COMBINATIONS)
    for how, want in expected.items():
        np.testing.assert_allclose(features.combine_layers(hidden, how), want, rtol=1e-6, err_msg=how)


def test_explicit_layer_list_concatenates_in_order():
    hidden = _hidden_states()
    combined = features.combine_layers(hidden, [-1, 0, 2])
    assert combined.shape == (2, 3, 12)
    np.testing.assert_array_equal(combined, np.concatenate([hidden[4], hidden[0], hidden[2]], axis=-1))
    assert features.parse_layers("-1, 0,2") == [-1, 0, 2]
    assert features.parse_layers("sum_last_four") == "sum_last_four"


def test_bad_layer_choices_are_named():
    hidden = _hidden_states(count=3)
    with pytest.raises(ValueError, match=r"Layer indices \[3, -4\] are out of range"):
        features.combine_layers(hidden, [3, -4, 1])
    with pytest.raises(ValueError, match="'sum_last_four' needs 4 Transformer layers; this model has 2"):
        features.combine_layers(hidden, "sum_last_four")
    with pytest.raises(ValueError, match="'best' is not one of"):
        features.combine_layers(hidden, "best")
    with pytest.raises(ValueError, match="Layer choice 'last2'"):
        features.parse_layers("last2")


def test_pooling_cls_and_mean_over_real_tokens():
    hidden = _hidden_states(count=1)[0]
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(features.pool(hidden, mask, "cls"), hidden[:, 0])
    mean = features.pool(hidden, mask, "mean")
    np.testing.assert_allclose(mean[0], hidden[0, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(mean[1], hidden[1].mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="Pooling 'max'"):
        features.pool(hidden, mask, "max")


# --- feature files ---------------------------------------------------------------------------------------------

WORDS = ("the of and to a in is that for it as with be on not this by are or from at an return value "
         "function object list string file name type default module class data").split()


def _wordpiece(folder):
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz.,()",
              *("##" + c for c in "abcdefghijklmnopqrstuvwxyz"), *WORDS]
    path = folder / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(pieces)) + "\n")
    return tokenizer.load_tokenizer(path)


def _tiny_encoder(vocab_size, num_layers=4):
    config = BertConfig(vocab_size=vocab_size, hidden_size=16, num_layers=num_layers, num_heads=2,
                        intermediate_size=24, max_position_embeddings=16)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda leaf: (0.2 * rng.normal(size=leaf.shape)).astype(np.float32),
                          convert.abstract_params(config, "encoder")["bert"])  # numpy: nothing to compile
    return BertModel(config), params


def _direct(encode, ids):
    """The features of one unpadded row [CLS] ids [SEP]: (text tokens (T, D'), pooled (D'))."""
    combined, pooled = encode(jnp.asarray([[2, *ids, 3]]))
    return np.asarray(combined[0, 1:-1]), np.asarray(pooled[0])


@pytest.mark.parametrize("layers,pooling", [("sum_last_four", "mean"), ([-1, 0], "cls")])
def test_feature_files_read_back_as_a_direct_forward_pass(tmp_path, layers, pooling):
    wordpiece = _wordpiece(tmp_path)
    model, params = _tiny_encoder(wordpiece.vocab_size)
    rng = np.random.default_rng(0)
    @jax.jit  # compiles once per length
    def encode(row):
        combined = features.combine_layers(model.apply({"params": params}, row).hidden_states, layers)
        return combined, features.pool(combined, jnp.ones_like(row), pooling)

    texts = [" ".join(rng.choice(WORDS, size=rng.choice([4, 14]))) for _ in range(20)]  # few lengths to compile
    texts[3] = ""  # an empty example keeps its place
    texts[7] = " ".join(rng.choice(WORDS, size=42))  # 42 tokens: three windows of 14
    writer = features.FeatureWriter(tmp_path / "out", {"layers": layers}, tokens_per_shard=30)
    count = features.extract(model, params, iter(texts), wordpiece, writer, layers=layers, pooling=pooling,
                             max_seq_length=16, batch_size=4)
    index = writer.close()
    assert count == index["examples"] == len(texts) and len(index["shards"]) > 2
    assert index["dim"] == (16 if layers == "sum_last_four" else 32)  # hidden 16

    read = list(features.read_features(tmp_path / "out"))
    assert [example for example, *_ in read] == list(range(len(texts)))
    for (example, ids, token_features, pooled), text in zip(read, texts):
        want_ids = wordpiece.encode(text)
        np.testing.assert_array_equal(ids, want_ids)
        if example == 7:  # windows: each runs on its own; the mean pools over all their positions
            parts = [_direct(encode, want_ids[start:start + 14]) for start in (0, 14, 28)]
            want_tokens = np.concatenate([part[0] for part in parts])
            lengths = np.array([16, 16, 16])
            want_pooled = (parts[0][1] if pooling == "cls"
                           else sum(part[1] * n for part, n in zip(parts, lengths)) / lengths.sum())
        else:
            want_tokens, want_pooled = _direct(encode, want_ids)
        assert token_features.shape == want_tokens.shape
        np.testing.assert_allclose(token_features, want_tokens, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(pooled, want_pooled, atol=1e-5, rtol=1e-5)


def test_memory_stays_bounded_on_a_long_input(tmp_path):
    """Host memory holds one shard and one batch: the peak stays far below what the run writes."""
    wordpiece = _wordpiece(tmp_path)
    model, params = _tiny_encoder(wordpiece.vocab_size)
    line = " ".join(WORDS[:12])  # 12 tokens
    writer = features.FeatureWriter(tmp_path / "out", {}, tokens_per_shard=4096)
    features.extract(model, params, iter([line]), wordpiece, writer, layers="concat_last_four", pooling="mean",
                     max_seq_length=16, batch_size=64)  # compile outside the measurement
    tracemalloc.start()
    count = features.extract(model, params, itertools.repeat(line, 4000), wordpiece, writer,
                             layers="concat_last_four", pooling="mean", max_seq_length=16, batch_size=64)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    index = writer.close()
    written = sum((tmp_path / "out" / shard["file"]).stat().st_size for shard in index["shards"])
    assert count == 4000 and written > 12_000_000  # 48,000 tokens x 64 float32s
    assert peak < written / 4, (peak, written)


def test_extract_features_tool_on_a_converted_hf_model_matches_hf(tmp_path):
    """HF folder -> tools/convert_hf.py's library call -> tools/extract_features.py: the stored features are
    HF's own hidden states for HF's own tokenization."""
    import torch
    import transformers

    from bertjax import interop

    (tmp_path / "hf").mkdir()
    vocab_size = _wordpiece(tmp_path / "hf").vocab_size
    torch.manual_seed(0)
    hf_model = transformers.BertModel(transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=32, attn_implementation="eager")).eval()
    hf_model.save_pretrained(tmp_path / "hf")
    interop.import_hf(tmp_path / "hf", tmp_path / "run")
    texts = ["the value of a list", "return the default module name", "class data"]
    (tmp_path / "input.txt").write_text("\n".join(texts) + "\n")
    result = subprocess.run(
        [sys.executable, "tools/extract_features.py", f"--checkpoint={tmp_path / 'run'}",
         f"--input=text:{tmp_path / 'input.txt'}", f"--output_dir={tmp_path / 'features'}", "--layers=-1,-2",
         "--pooling=cls", "--max_seq_length=16", "--batch_size=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "3 examples" in result.stdout

    hf_tokenizer = transformers.BertTokenizerFast(str(tmp_path / "hf" / "vocab.txt"))
    for (example, ids, token_features, pooled), text in zip(features.read_features(tmp_path / "features"), texts):
        encoded = hf_tokenizer(text, return_tensors="pt")
        np.testing.assert_array_equal(ids, encoded["input_ids"][0, 1:-1].numpy())
        with torch.no_grad():
            hidden = hf_model(**encoded, output_hidden_states=True).hidden_states
        want = torch.cat([hidden[-1], hidden[-2]], dim=-1)[0].numpy()
        np.testing.assert_allclose(token_features, want[1:-1], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(pooled, want[0], atol=1e-5, rtol=1e-5)
    index = json.loads((tmp_path / "features" / "index.json").read_text())
    assert index["layers"] == [-1, -2] and index["dim"] == 32 and index["examples"] == 3


def test_inputs_from_text_files_and_tfds(tmp_path):
    import tensorflow_datasets as tfds

    (tmp_path / "a.txt").write_text("first line\n\nthird line\n")
    (tmp_path / "b.txt").write_text("Café naïve\n")
    assert list(features.read_texts(f"text:{tmp_path}/*.txt")) == ["first line", "", "third line", "Café naïve"]

    records = ["One text.\nIts second line.", "Ünïcode text."]

    class FeatureTexts(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Test data."}

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text()}), disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for index, text in enumerate(records):
                yield index, {"text": text}

    tfds.disable_progress_bar()
    FeatureTexts(data_dir=str(tmp_path / "tfds"), file_format="array_record").download_and_prepare()
    texts = list(features.read_texts(f"tfds:feature_texts:train:text:{tmp_path / 'tfds'}"))
    assert texts == ["One text. Its second line.", "Ünïcode text."]
    with pytest.raises(KeyError, match="no field 'body'"):
        list(features.read_texts(f"tfds:feature_texts:train:body:{tmp_path / 'tfds'}"))
    with pytest.raises(ValueError, match="is not text:FILES or tfds"):
        features.read_texts("builtin")
    with pytest.raises(FileNotFoundError, match="no file matches"):
        features.read_texts(f"text:{tmp_path}/missing*.txt")
