"""Fine-tuning runs: the model and tokenizer taken from the starting checkpoint, training with the one train
loop, the best checkpoint's dev metrics, test predictions, several seeds, and the from-scratch baseline.

    WORKDIR/config.json, checkpoints/, best/STEP/   the run (see bertjax.train) and its best parameters
    WORKDIR/results.json                            dev metrics: the best evaluation's and the final one's
    WORKDIR/predictions/                            --predict: test predictions (GLUE: SST-2.tsv, MNLI-m.tsv, ...)
"""

import dataclasses
import functools
import json
import pathlib
import statistics

import jax
import numpy as np

from bertjax import checkpoint, convert, sharding, train
from bertjax.model import BertConfig


def make_task(config):
    """The task object for `config.finetune.task`."""
    name = config.finetune.task
    if not name:
        raise ValueError("config.finetune.task is not set; e.g. --config=configs/glue.py:task=sst2.")
    if name == "squad":
        from bertjax.tasks import squad
        return squad.SquadTask(config)
    if name == "ner":
        from bertjax.tasks import ner
        return ner.NerTask(config)
    from bertjax.tasks import glue

    return glue.ClassificationTask(config)


def _run_config(path: pathlib.Path) -> dict | None:
    """The config.json of the bertjax run that a checkpoint path (run, checkpoints/, STEP/, best/STEP/) is in."""
    for folder in (path, *path.parents[:3]):
        if (folder / "config.json").is_file() and (folder / "checkpoints").is_dir():
            return json.loads((folder / "config.json").read_text())
    return None


def resolve_from_checkpoint(config) -> None:
    """Take the model config and tokenizer from `train.init_checkpoint` (a bertjax run, or an HF folder with
    config.json and vocab.txt), so that only the task needs naming. Model keys set in `config` other than
    `variant` (dropout, dtype, attention_impl, ...) override the checkpoint's."""
    if not config.train.init_checkpoint:
        return
    path = pathlib.Path(config.train.init_checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"train.init_checkpoint {path} does not exist.")
    run_config = _run_config(path)
    if run_config is not None:
        source = BertConfig.from_config(run_config["model"])
        tokenizer = run_config["data"].get("tokenizer")
    elif (path / "config.json").is_file():
        source = convert.config_from_hf(json.loads((path / "config.json").read_text()), str(path / "config.json"))
        tokenizer = next((str(path / name) for name in ("tokenizer.json", "vocab.txt") if (path / name).is_file()), None)
    else:
        raise FileNotFoundError(f"train.init_checkpoint {path}: neither a bertjax run (config.json and "
                                "checkpoints/) nor an HF BERT folder (config.json and model.safetensors).")
    explicit = {key: value for key, value in config.model.items() if value is not None and key != "variant"}
    resolved = {**dataclasses.asdict(source), **explicit}
    BertConfig(**resolved)  # validates the combination
    config.model.variant = "base"
    for key, value in resolved.items():
        config.model[key] = value
    if not config.data.tokenizer:
        config.data.tokenizer = tokenizer


def predict_and_write(config, task, params_path: pathlib.Path, directory: pathlib.Path,
                      splits=None) -> list[pathlib.Path]:
    """Load the parameters at `params_path` onto the mesh, predict each split (default: the task's test
    splits) and write the task's prediction files."""
    mesh = sharding.make_mesh(config.mesh)
    batch_size = config.train.eval_batch_size // jax.process_count()
    example = task.example_batch(batch_size)
    with sharding.activate(mesh, config.mesh.rules):
        boxed = jax.eval_shape(functools.partial(task.init_params, jax.random.PRNGKey(0), example, boxed=True))
        shardings = sharding.param_shardings(boxed, mesh, config.mesh.rules)
        abstract = jax.eval_shape(functools.partial(task.init_params, jax.random.PRNGKey(0), example))
        params = jax.device_put(checkpoint.load_params(params_path, abstract), shardings)
        predict_fn = jax.jit(functools.partial(train.predict_step, task=task),
                             in_shardings=(shardings, sharding.batch_sharding(mesh)),
                             out_shardings=sharding.replicated(mesh))
        written = []
        for split in task.test_splits if splits is None else splits:
            predictions, _ = train.predict(task, predict_fn, params, mesh, split, batch_size=batch_size)
            if jax.process_index() == 0:
                written += task.write_predictions(predictions, split, directory)
    return written


def run(config, workdir: str | pathlib.Path, *, predict: bool = False, task=None) -> dict:
    """One fine-tuning run; returns (and writes to WORKDIR/results.json) the best and final dev metrics. `task`:
    a task object built from `config` (its model config already complete), instead of `make_task(config)`'s."""
    workdir = pathlib.Path(workdir)
    resolve_from_checkpoint(config)
    task = make_task(config) if task is None else task
    if config.finetune.num_epochs > 0:
        config.train.num_steps = steps_for_epochs(task.num_train_examples(), config.finetune.num_epochs,
                                                  config.train.global_batch_size)
    final = train.train_and_evaluate(config, workdir, task)
    best = checkpoint.BestCheckpoint(workdir, task.metric)
    best.close()
    results = {"task": task.name, "metric": task.metric, "init_checkpoint": config.train.init_checkpoint,
               "seed": config.seed, "num_steps": config.train.num_steps, "best": best.record, "final": final}
    if predict:
        files = predict_and_write(config, task, best.directory, workdir / "predictions")
        results["predictions"] = [str(path) for path in files]
    if jax.process_index() == 0:
        checkpoint.write_json(workdir / "results.json", results)
    return results


def steps_for_epochs(num_examples: int, num_epochs: float, global_batch_size: int) -> int:
    return max(1, int(np.ceil(num_examples * num_epochs / global_batch_size)))


def summarize_seeds(results: list[dict]) -> dict[str, dict[str, float]]:
    """Best dev metrics across seeds: median, mean and (sample) standard deviation of each."""
    names = results[0]["best"]["metrics"].keys()
    summary = {}
    for name in names:
        values = [result["best"]["metrics"][name] for result in results]
        summary[name] = {"median": statistics.median(values), "mean": statistics.fmean(values),
                         "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
    return summary
