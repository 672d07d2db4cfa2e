"""The `bertjax` command as a user meets it: installed, run from any directory, configs found by name,
every key discoverable with its meaning, `--help` that answers at once and exits 0."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

from bertjax import cli
from bertjax.configs import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
BERTJAX = pathlib.Path(sys.executable).parent / "bertjax"  # the console script `pip install` made


def _bertjax(*args, cwd, timeout=600):
    return subprocess.run([str(BERTJAX), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_subcommand_answers_help_at_once(name, tmp_path):
    # -X importtime lists every module imported: --help must not pay for JAX (or torch) to print its flags.
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "bertjax", name, "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: bertjax {name}") and "flags:" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert not imported & {"jax", "torch", "flax", "tensorflow"}, sorted(imported & {"jax", "torch", "flax"})


def test_help_lists_choices_that_the_library_accepts(tmp_path):
    from bertjax import convert, features

    heads = _bertjax("convert_hf", "--help", cwd=tmp_path).stdout
    assert all(name in heads for name in convert.HEADS)
    layers = _bertjax("extract_features", "--help", cwd=tmp_path).stdout
    assert all(name in layers for name in (*features.COMBINATIONS, *features.POOLINGS))


def test_top_level_usage_and_unknown_commands(tmp_path):
    result = _bertjax("--help", cwd=tmp_path)
    assert result.returncode == 0 and all(re.search(rf"^  {name} ", result.stdout, re.M) for name in cli.COMMANDS)
    result = _bertjax("pretrian", cwd=tmp_path)
    assert result.returncode == 2 and "Did you mean pretrain?" in result.stderr
    result = _bertjax("export", "--checkpoint=run", "--hf_dir=hf", cwd=tmp_path)  # a flag of before the renaming
    assert result.returncode == 2
    assert "'hf_dir': it is now --checkpoint (convert_hf reads it) or --output_dir" in result.stderr
    result = _bertjax("pretrain", "--config=bert_tiny", cwd=tmp_path)  # --workdir left out
    assert result.returncode != 0 and "--workdir" in result.stderr and "Traceback" not in result.stderr


def test_config_show_lists_every_key_with_its_comment(tmp_path):
    result = _bertjax("config", "show", "glue:task=sst2", "optim.learning_rate=3e-5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    comments = common.key_comments()
    keys = [key for key, _, _ in common.flat_keys(common.get_config())]
    assert list(lines) == keys  # every key of common.py, in its order
    for key in keys:
        assert comments[key], f"{key} has no comment in bertjax/configs/common.py"
        assert lines[key].endswith(comments[key]), key
    assert re.match(r"optim\.learning_rate\s+3e-05\s+float\s+the peak, after warmup", lines["optim.learning_rate"])
    assert re.match(r"finetune\.task\s+'sst2'\s+str", lines["finetune.task"])
    assert re.match(r"model\.hidden_size\s+None \(base: 768\)\s+int", lines["model.hidden_size"])

    listing = _bertjax("config", "list", cwd=tmp_path).stdout
    assert re.search(r"^bert_tiny\s+The demo: BERT-tiny", listing, re.M)
    result = _bertjax("config", "show", "bert_tiny", "optim.learnig_rate=1", cwd=tmp_path)
    assert result.returncode == 1 and "Did you mean optim.learning_rate?" in result.stderr


def test_a_config_file_by_path_with_overrides_in_every_form(tmp_path):
    (tmp_path / "mine.py").write_text(
        "from bertjax.configs import common\n\n\ndef get_config(arg=None):\n"
        "    config = common.get_config()\n    config.model.variant = 'tiny'\n    return common.apply_arg(config, arg)\n")
    args = [f"--config={tmp_path / 'mine.py'}:seed=3", "--config.data.packing", "--noconfig.train.donate_state",
            "--config.optim.learning_rate", "2e-3", "--config.train.num_steps=1e3"]
    from bertjax import configs

    holder = cli.ConfigHolder("config", training=False)
    cli._CONFIGS.append(holder)
    try:
        assert cli._take_overrides(args) == [args[0]]
        config = configs.load(f"{tmp_path / 'mine.py'}:seed=3", holder.overrides)
    finally:
        cli._CONFIGS.remove(holder)
    assert (config.seed, config.model.variant) == (3, "tiny")
    assert (config.data.packing, config.train.donate_state) == (True, False)
    assert (config.optim.learning_rate, config.train.num_steps) == (2e-3, 1000) and config.is_locked


@pytest.mark.slow
def test_the_installed_command_chains_pretrain_finetune_export_outside_the_checkout(builtin_documents, tmp_path):
    """From a directory that is not the checkout: tokenizer, shards, pretraining (only data.prepared_dir set),
    fine-tuning from it, export; each stage finds the last one's output by the paths given, none by default."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "corpus.txt").write_text("\n\n".join("\n".join(document) for document in builtin_documents[:300]) + "\n")
    result = _bertjax("train_tokenizer", "--corpus=text:corpus.txt", "--output_dir=tok", "--vocab_size=600", cwd=work)
    assert result.returncode == 0, result.stderr
    result = _bertjax("prepare_data", "--corpus=text:corpus.txt", "--tokenizer=tok", "--output_dir=data",
                      "--validation_fraction=0.1", "--num_workers=1", cwd=work)
    assert result.returncode == 0, result.stderr
    tiny = ["--config.data.max_seq_length=64", "--config.train.global_batch_size=8", "--config.train.eval_batch_size=8",
            "--config.train.log_every=2", "--config.train.eval_every=0", "--config.train.checkpoint_every=4"]
    result = _bertjax("pretrain", "--config", "bert_tiny", "--workdir=pre", "--config.data.prepared_dir=data",
                      "--config.train.num_steps=4", "--config.optim.warmup_steps=100", *tiny, cwd=work)
    assert result.returncode == 0, result.stderr
    assert "final evaluation: " in result.stdout and (work / "pre" / "checkpoints" / "4").is_dir()
    # Its output is a pipe, not a terminal: one plain line per log_every (2) steps, no progress bar.
    logged = re.findall(r"^step (\d+)/4 loss [\d.]+ lr [\d.e+-]+ tokens/s [\d,]+ input_wait \d+% eta \S+$",
                        result.stderr, re.M)
    assert logged == ["2", "4"] and "step/s" not in result.stderr, result.stderr  # tqdm's bar says step/s
    assert re.search(r"^first step after [\d.]+ s from process start \(compile [\d.]+ s\)$", result.stderr, re.M)
    recorded = json.loads((work / "pre" / "config.json").read_text())["data"]
    assert pathlib.Path(recorded["tokenizer"]).resolve() == (work / "data" / "tokenizer").resolve()

    result = _bertjax("finetune", "--config=glue_demo", "--workdir=ft", "--config.train.init_checkpoint=pre",
                      "--config.finetune.num_epochs=0", "--config.train.num_steps=2", "--log_format=bar", *tiny,
                      cwd=work)
    assert result.returncode == 0, result.stderr
    assert "step/s" in result.stderr and "lr=" in result.stderr  # the bar, asked for: it shows the learning rate
    assert "accuracy" in json.loads((work / "ft" / "results.json").read_text())["final"]

    result = _bertjax("export", "--checkpoint=ft", "--output_dir=hf", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "BertForSequenceClassification" in result.stdout
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {path.name for path in (work / "hf").iterdir()}
    assert not (work / "runs").exists() and not any(ROOT.joinpath("runs", name).exists() for name in ("pre", "ft"))


def test_a_bare_missing_key_is_named_as_one():
    assert cli._message(KeyError("question")) == ("the key 'question' is missing from the input (run with "
                                                  "--traceback to see where it was read)")
    assert cli._message(KeyError("no run in x: run bertjax pretrain first")) == "no run in x: run bertjax pretrain first"
