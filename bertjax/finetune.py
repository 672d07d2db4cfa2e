"""Fine-tuning runs: the model and tokenizer taken from the starting checkpoint, training with the one train
loop, the best checkpoint's dev metrics, test predictions, several seeds, and the from-scratch baseline.

    WORKDIR/config.json, checkpoints/, best/STEP/   the run (see bertjax.train) and its best parameters
    WORKDIR/results.json                            dev metrics: the best evaluation's and the final one's
    WORKDIR/evaluation.json                         `evaluate_only`: one checkpoint's metrics, without training
    WORKDIR/predictions/                            --predict: test predictions (GLUE: SST-2.tsv, MNLI-m.tsv, ...)
    WORKDIR/scratch/                                `run_and_compare`: the same model trained from random
                                                    initialisation on the same budget; comparison.json
    WORKDIR/seed_N/, WORKDIR/scratch/seed_N/        `run_seeds`: one run per seed; summary.json
"""

import copy
import dataclasses
import functools
import json
import pathlib
import statistics
from collections.abc import Callable, Sequence

import jax
import numpy as np

from bertjax import checkpoint, convert, files, hub, runs, sharding, train
from bertjax.model import BertConfig


def make_task(config):
    """The task object for `config.finetune.task`."""
    name = config.finetune.task
    if not name:
        raise ValueError("config.finetune.task is not set; e.g. --config=glue:task=sst2.")
    if name == "squad":
        from bertjax.tasks import squad
        return squad.SquadTask(config)
    if name == "ner":
        from bertjax.tasks import ner
        return ner.NerTask(config)
    if name == "swag":
        from bertjax.tasks import multiple_choice
        return multiple_choice.MultipleChoiceTask(config)
    if name == "classify":
        from bertjax.tasks import classify
        return classify.FileClassificationTask(config)
    from bertjax.tasks import glue

    return glue.ClassificationTask(config)


def resolve_from_checkpoint(config) -> None:
    """Take the model config and tokenizer from `train.init_checkpoint` (a bertjax run, or an HF folder with
    config.json and vocab.txt, or its Hub id in the local HF cache), so that only the task needs naming. Model
    keys set in `config` other than `variant` (dropout, dtype, attention_impl, ...) override the checkpoint's."""
    if not config.train.init_checkpoint:
        return
    path = hub.resolve_hf(config.train.init_checkpoint)  # the id stays in the config: the cache is per machine
    if not path.exists():
        raise FileNotFoundError(f"train.init_checkpoint {path} does not exist.")
    run_directory = runs.run_directory(path)
    if run_directory is not None:
        run_config = runs.read_config(run_directory)
        source = BertConfig.from_config(run_config["model"])
        tokenizer, lowercase = run_config["data"].get("tokenizer"), run_config["data"].get("lowercase")
    elif convert.is_hf_folder(path):
        source = convert.config_from_hf(json.loads((path / "config.json").read_text()), str(path / "config.json"))
        tokenizer = next((str(path / name) for name in ("tokenizer.json", "vocab.txt") if (path / name).is_file()), None)
        lowercase = None  # the folder's own: its tokenizer.json, or the tokenizer_config.json beside vocab.txt
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
        if config.data.lowercase is None:  # the tokenizer read with the run's casing
            config.data.lowercase = lowercase


def predict_and_write(config, task, params_path: pathlib.Path, directory: pathlib.Path,
                      splits=None) -> list[pathlib.Path]:
    """Load the parameters at `params_path` onto the mesh, predict each split (default: the task's test
    splits) and write the task's prediction files."""
    mesh = sharding.make_mesh(config.mesh)
    batch_size = config.train.eval_batch_size // jax.process_count()
    with sharding.activate(mesh, config.mesh.rules):
        params, shardings = _load_onto_mesh(config, task, params_path, mesh)
        predict_fn = train.compile_evaluation(task, shardings, mesh)
        written = []
        for split in task.test_splits if splits is None else splits:
            predictions, _ = train.predict(task, predict_fn, params, mesh, split, batch_size=batch_size)
            if jax.process_index() == 0:
                written += task.write_predictions(predictions, split, directory)
    return written


def _load_onto_mesh(config, task, params_path, mesh):
    """The task model's parameters from `params_path` (a run's checkpoint or an HF folder holding every
    parameter, the head's too), sharded over `mesh`; and their shardings."""
    example = task.example_batch(config.train.eval_batch_size // jax.process_count())
    boxed = jax.eval_shape(functools.partial(task.init_params, jax.random.PRNGKey(0), example, boxed=True))
    shardings = sharding.param_shardings(boxed, mesh, config.mesh.rules)
    abstract = jax.eval_shape(functools.partial(task.init_params, jax.random.PRNGKey(0), example))
    return jax.device_put(runs.load_params(params_path, abstract), shardings), shardings


def _check_identity(task, path: pathlib.Path) -> None:
    """A run's checkpoint made for another task (other labels, another tokenizer) is refused, naming the key."""
    if runs.run_directory(path) is None:
        return  # an HF folder: its shapes are checked when loading
    record = runs.open_run(path).record
    for key, value in task.identity.items():
        if key in record and record[key] != value:
            raise ValueError(f"{path} was written with {key}={record[key]!r}; this config's task has {value!r}. "
                             "Evaluate it with the config it was trained with.")


def evaluation_checkpoint(workdir: pathlib.Path, checkpoint_path: str | pathlib.Path | None, config) -> pathlib.Path:
    """What `evaluate_only` scores: `checkpoint_path` when given, else WORKDIR's best parameters, else its
    latest checkpoint, else `train.init_checkpoint` (an HF folder with the task's head, say)."""
    if checkpoint_path:
        return pathlib.Path(checkpoint_path)
    for candidate in (workdir / "best", workdir / "checkpoints"):
        if candidate.is_dir() and any(child.name.isdigit() for child in candidate.iterdir()):
            return candidate
    if config.train.init_checkpoint:
        return pathlib.Path(config.train.init_checkpoint)
    raise FileNotFoundError(f"Nothing to evaluate: {workdir} has no best/ or checkpoints/, and neither "
                            "--checkpoint nor train.init_checkpoint names one.")


def evaluate_only(config, workdir: str | pathlib.Path, checkpoint_path: str | pathlib.Path | None = None) -> dict:
    """Score one checkpoint (see `evaluation_checkpoint`) on the task's evaluation splits (and its test splits
    that have labels, their metrics prefixed `test/`) without training;
    returns (and writes to WORKDIR/evaluation.json) {"checkpoint", "task", "metrics"}. The model and tokenizer
    are the checkpoint's own (a bertjax run's config.json, or the HF folder's); the config names the task."""
    workdir = pathlib.Path(workdir)
    path = hub.resolve_hf(evaluation_checkpoint(workdir, checkpoint_path, config))  # evaluation.json names it
    config = copy.deepcopy(config)
    config.train.init_checkpoint = str(path)  # the model config and tokenizer are the evaluated checkpoint's
    resolve_from_checkpoint(config)
    task = make_task(config)
    _check_identity(task, path)
    mesh = sharding.make_mesh(config.mesh)
    with sharding.activate(mesh, config.mesh.rules):
        params, shardings = _load_onto_mesh(config, task, path, mesh)
        evaluate = functools.partial(train.evaluate, task, train.compile_evaluation(task, shardings, mesh), params,
                                     mesh, batch_size=config.train.eval_batch_size // jax.process_count())
        metrics, _ = evaluate()  # named as training's evaluations name them
        for split in task.labelled_test_splits:
            metrics.update({f"{split}/{name}": value for name, value in evaluate(splits=(split,))[0].items()})
    step_dir = runs.step_directory(path) if runs.run_directory(path) is not None else path
    results = {"checkpoint": str(step_dir), "task": task.name, "metric": task.metric, "metrics": metrics}
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        files.write_json(workdir / "evaluation.json", results)
    return results


def run(config, workdir: str | pathlib.Path, *, predict: bool = False, task=None) -> dict:
    """One fine-tuning run; returns (and writes to WORKDIR/results.json) the best and final dev metrics. `task`:
    a task object built from `config` (its model config already complete), instead of `make_task(config)`'s."""
    workdir = pathlib.Path(workdir)
    resolve_from_checkpoint(config)
    task = make_task(config) if task is None else task
    for split in dict.fromkeys(("train", *task.eval_splits, *(task.test_splits if predict else ()))):
        task.read(split)  # a bad dev label or test column is found now, not after training
    if config.finetune.num_epochs > 0:
        config.train.num_steps = steps_for_epochs(task.num_train_examples(), config.finetune.num_epochs,
                                                  config.train.global_batch_size)
    final = train.train_and_evaluate(config, workdir, task)
    best = checkpoint.BestCheckpoint(workdir, task.metric)
    best.close()
    results = {"task": task.name, "metric": task.metric, "init_checkpoint": config.train.init_checkpoint,
               "seed": config.seed, "num_steps": config.train.num_steps, "best": best.record, "final": final}
    if predict:
        written = predict_and_write(config, task, best.directory, workdir / "predictions")
        results["predictions"] = [str(path) for path in written]
    if jax.process_index() == 0:
        files.write_json(workdir / "results.json", results)
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


def show(label: str, results: dict) -> str:
    """One line: a run's best evaluation, its step and its metrics."""
    best = results["best"]
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in best["metrics"].items())
    return f"{label}: best {results['metric']} at step {best['step']} of {results['num_steps']}: {metrics}"


def scratch_config(config):
    """`config` (its model already resolved from the checkpoint by `run`) with no init_checkpoint: the same
    model and budget from random initialisation."""
    if not config.train.init_checkpoint:
        raise ValueError("--compare_scratch compares with an init_checkpoint run; set train.init_checkpoint.")
    scratch = copy.deepcopy(config)
    scratch.train.init_checkpoint = None
    return scratch


def _silent(line: str) -> None:
    del line


def run_and_compare(config, workdir: str | pathlib.Path, *, predict: bool = False, compare_scratch: bool = False,
                    report: Callable[[str], None] = _silent) -> dict:
    """`run`, and with `compare_scratch` the same model from scratch in WORKDIR/scratch and
    WORKDIR/comparison.json with both best evaluations. `report` gets each line worth showing."""
    workdir = pathlib.Path(workdir)
    results = run(config, workdir, predict=predict)
    report(show("fine-tuned from " + str(config.train.init_checkpoint or "scratch"), results))
    for path in results.get("predictions", []):
        report(f"predictions: {path}")
    if compare_scratch:
        scratch = run(scratch_config(config), workdir / "scratch")
        metric = results["metric"]
        report(show("from scratch", scratch))
        report(f"{metric}: pretrained {results['best']['value']:.4f} vs from scratch "
               f"{scratch['best']['value']:.4f} on the same {results['num_steps']} steps")
        if jax.process_index() == 0:
            files.write_json(workdir / "comparison.json", {
                "metric": metric, "pretrained": results["best"], "scratch": scratch["best"]})
    return results


def run_seeds(config, workdir: str | pathlib.Path, seeds: Sequence[str | int], *, predict: bool = False,
              compare_scratch: bool = False, report: Callable[[str], None] = _silent) -> dict:
    """One `run` per seed in WORKDIR/seed_N (and from scratch in WORKDIR/scratch/seed_N), then
    WORKDIR/summary.json: per model the median, mean and std of each best dev metric over the seeds.
    Returns the summaries by model ("pretrained", "scratch")."""
    workdir = pathlib.Path(workdir)
    results = {"pretrained": [], **({"scratch": []} if compare_scratch else {})}
    for seed in seeds:
        seeded = copy.deepcopy(config)
        seeded.seed = int(seed)
        results["pretrained"].append(run(seeded, workdir / f"seed_{seed}", predict=predict))
        report(show(f"seed {seed}", results["pretrained"][-1]))
        if compare_scratch:
            results["scratch"].append(run(scratch_config(seeded), workdir / "scratch" / f"seed_{seed}"))
            report(show(f"seed {seed} from scratch", results["scratch"][-1]))
    summaries = {name: summarize_seeds(runs_of_model) for name, runs_of_model in results.items()}
    if jax.process_index() == 0:
        files.write_json(workdir / "summary.json", {"seeds": [int(seed) for seed in seeds], **{
            ("metrics" if name == "pretrained" else f"{name}_metrics"): summary
            for name, summary in summaries.items()}})
    for name, summary in summaries.items():
        for metric, stats in summary.items():
            report(f"{name} {metric}: median {stats['median']:.4f}, mean {stats['mean']:.4f} ± {stats['std']:.4f} "
                   f"over {len(stats['values'])} seeds")
    if compare_scratch and len(seeds) > 1:
        report(seed_comparison(results["pretrained"][0]["metric"], summaries))
    return summaries


def seed_comparison(metric: str, summaries: dict) -> str:
    """One line: the pretrained model's mean best `metric` against scratch's, the difference in units of the
    larger of the two seeds' standard deviations."""
    pretrained, scratch = summaries["pretrained"][metric], summaries["scratch"][metric]
    gap, spread = pretrained["mean"] - scratch["mean"], max(pretrained["std"], scratch["std"])
    times = f"{gap / spread:.1f} times" if spread > 0 else "with no spread between"
    return (f"{metric}: pretrained {pretrained['mean']:.4f} vs from scratch {scratch['mean']:.4f} over "
            f"{len(pretrained['values'])} seeds: difference {gap:+.4f}, {times} the larger seed standard deviation "
            f"({spread:.4f})")
