"""Every config file loads and builds its model; bad keys and values fail naming the key."""

import importlib
import pathlib
import re
import subprocess
import sys

import pytest

from bertjax.model import VARIANTS, BertConfig
from bertjax.configs import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(path for path in (ROOT / "bertjax" / "configs").glob("*.py") if path.stem not in ("__init__", "common"))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.stem)
def test_every_config_file_loads_and_builds_its_model(path):
    config = importlib.import_module(f"bertjax.configs.{path.stem}").get_config()
    model = BertConfig.from_config(config.model)
    assert config.model.variant in VARIANTS
    assert model.num_layers == (config.model.num_layers or VARIANTS[config.model.variant]["num_layers"])
    assert config.is_locked


def test_config_argument_overrides_with_the_key_type():
    from bertjax.configs import bert_base
    config = bert_base.get_config("model.dtype=bfloat16,seed=3,model.pre_layer_norm=true,model.hidden_dropout=0")
    assert (config.seed, config.model.dtype, config.model.pre_layer_norm) == (3, "bfloat16", True)
    assert isinstance(config.model.hidden_dropout, float)
    model = BertConfig.from_config(config.model)
    assert (model.dtype, model.hidden_size, model.hidden_dropout) == ("bfloat16", 768, 0.0)


@pytest.mark.parametrize("arg, message", [
    ("model.hiden_size=3", "unknown config key 'model.hiden_size'. Did you mean model.hidden_size?"),
    ("modle.dtype=bfloat16", "unknown config key 'modle.dtype'. Did you mean model.dtype?"),
    ("data.max_seq_len=64", "Did you mean data.max_seq_length?"),
    ("seed=three", "seed: 'three' is not an int"),
    ("data.packing=maybe", "data.packing: 'maybe' is not true or false"),
    ("seed", "not of the form key=value"),
])
def test_bad_config_argument_names_the_key(arg, message):
    with pytest.raises((KeyError, ValueError), match=message):
        common.apply_arg(common.get_config(), arg)


def _run_tool(*args):
    return subprocess.run([sys.executable, "tools/model_info.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_unknown_override_on_the_command_line_fails_naming_the_key():
    result = _run_tool("--config", "bert_tiny", "--config.train.learning_rate=1e-3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown config key 'train.learning_rate'. Did you mean optim.learning_rate?" in result.stderr
    result = _run_tool("--config=bert_tiny", "--config.train.num_steps", "many")
    assert result.returncode == 2 and "train.num_steps: 'many' is not an int" in result.stderr
    result = _run_tool("--config", "bert_tiyn")
    assert result.returncode == 2 and "no shipped config of that name; did you mean bert_tiny?" in result.stderr
    result = _run_tool("--config", "missing/config.py")
    assert result.returncode == 2 and "missing/config.py: no such file" in result.stderr


def test_model_info_reports_the_parameter_count():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bertjax.heads import BertForPretraining
    from bertjax.configs import bert_tiny

    result = _run_tool("--config", "bert_tiny", "--config.model.num_layers=3", "--max_seq_length=32",
                       "--batch_size=2", "--steps=1")
    assert result.returncode == 0, result.stderr
    config = BertConfig.from_config(bert_tiny.get_config("model.num_layers=3").model)
    abstract = jax.eval_shape(lambda: nn.meta.unbox(BertForPretraining(config).init(
        jax.random.key(0), jnp.ones((1, 4), jnp.int32))))
    total = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(abstract))
    assert re.search(r"^\s*total\s+([\d,]+)", result.stdout, re.M).group(1) == f"{total:,}"
    assert "tokens/s" in result.stdout


def test_modern_base_is_transformers_modernbert_base_and_modern_tiny_matches_bert_tiny():
    """modern_base's model is what transformers' ModernBertConfig defaults (ModernBERT-base) convert to; modern_tiny
    trains like bert_tiny (steps, batch, evaluation) with about its parameter count, at 30% masking evaluated at 15%."""
    import jax
    import transformers

    from bertjax import benchmark, convert_modernbert
    from bertjax.configs import bert_tiny, modern_base, modern_tiny

    modern = modern_base.get_config()
    assert BertConfig.from_config(modern.model) == convert_modernbert.config_from_hf(
        transformers.ModernBertConfig().to_dict())
    assert (modern.data.mask_rate, modern.data.sentence_task, modern.optim.schedule) == (0.3, "none", "wsd")
    common.validate(modern)

    tiny, bert = modern_tiny.get_config(), bert_tiny.get_config()
    common.validate(tiny)
    assert (tiny.data.mask_rate, tiny.data.eval_mask_rate, tiny.data.sentence_task) == (0.3, 0.15, "none")
    for key in ("num_steps", "global_batch_size", "eval_batch_size", "eval_every"):
        assert tiny.train[key] == bert.train[key]
    assert tiny.data.max_seq_length == bert.data.max_seq_length
    counts = []
    for config in (tiny, bert):
        task = benchmark.synthetic_task(config)
        batch = benchmark.synthetic_batch(task.model_config, 2, 128, 20)
        shapes = jax.eval_shape(task.init_params, jax.random.key(0), batch)
        counts.append(sum(leaf.size for leaf in jax.tree.leaves(shapes)))
    assert abs(counts[0] / counts[1] - 1) < 0.02, counts
