"""Fine-tune a pretrained BERT on a task and report its dev metrics; optionally write test predictions.

    python tools/finetune.py --config configs/glue.py:task=sst2 --workdir runs/sst2 \\
        --config.train.init_checkpoint=runs/base --config.finetune.data_dir=glue_data --predict
    python tools/finetune.py --config configs/glue_demo.py --workdir runs/demo/finetune --compare_scratch
    python tools/finetune.py --config configs/squad.py:v2 --workdir runs/squad2 --config.train.init_checkpoint=runs/base \\
        --config.squad.train_file=train-v2.0.json --config.squad.validation_file=dev-v2.0.json --predict
    python tools/finetune.py --config configs/ner.py --workdir runs/ner --config.train.init_checkpoint=runs/base \\
        --config.ner.train_file=eng.train --config.ner.validation_file=eng.testa --config.ner.test_file=eng.testb

The model and tokenizer come from --config.train.init_checkpoint (a bertjax run directory or an HF BERT
folder); the new head starts fresh, and the run prints which parameters were loaded and which are new.
WORKDIR gets results.json (the best and the final dev metrics), best/ (the best parameters), and with
--predict predictions/ in the GLUE server's format (SST-2.tsv, MNLI-m.tsv, MNLI-mm.tsv, AX.tsv, ...), SQuAD's
(predictions.json, null_odds.json for v2.0, of the dev set) or CoNLL's (test.conll, else validation.conll).
--seeds=1,2,3 runs once per seed (WORKDIR/seed_N) and writes summary.json: median, mean and std.
--compare_scratch also trains the same model from random initialisation (WORKDIR/scratch) on the same budget
(with --seeds, once per seed, WORKDIR/scratch/seed_N, summarised in summary.json's `scratch_metrics`).
Running the same command again resumes.
"""

import copy
import pathlib

import jax
from absl import flags
from ml_collections import config_flags

from bertjax import checkpoint, cli, finetune, sharding

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/glue.py:task=sst2",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and predictions.")
_PREDICT = flags.DEFINE_bool("predict", False, "Write test-set predictions with the best parameters.")
_SEEDS = flags.DEFINE_list("seeds", None, "Run once per seed (WORKDIR/seed_N) and summarise across seeds.")
_COMPARE_SCRATCH = flags.DEFINE_bool(
    "compare_scratch", False, "Also fine-tune the same model from random initialisation and compare.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join JAX's multi-process runtime (see tools/pretrain.py).")
flags.mark_flags_as_required(["config", "workdir"])


def _show(label: str, results: dict) -> str:
    best = results["best"]
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in best["metrics"].items())
    return f"{label}: best {results['metric']} at step {best['step']} of {results['num_steps']}: {metrics}"


def _scratch_config(config):
    if not config.train.init_checkpoint:
        raise ValueError("--compare_scratch compares with an init_checkpoint run; set train.init_checkpoint.")
    scratch = copy.deepcopy(config)  # the model config already resolved from the checkpoint by finetune.run
    scratch.train.init_checkpoint = None
    return scratch


def _summarize(workdir: pathlib.Path, seeds: list[str], runs: dict[str, list[dict]]) -> None:
    """summary.json: per model (pretrained, and scratch with --compare_scratch) the median, mean and std of
    each best dev metric over the seeds."""
    summaries = {name: finetune.summarize_seeds(results) for name, results in runs.items()}
    checkpoint.write_json(workdir / "summary.json", {"seeds": [int(s) for s in seeds], **{
        ("metrics" if name == "pretrained" else f"{name}_metrics"): summary for name, summary in summaries.items()}})
    for name, summary in summaries.items():
        for metric, stats in summary.items():
            print(f"{name} {metric}: median {stats['median']:.4f}, mean {stats['mean']:.4f} ± {stats['std']:.4f} "
                  f"over {len(stats['values'])} seeds")


def main(argv):
    del argv
    if _DISTRIBUTED.value:
        sharding.initialize_distributed(None, None, None)
    workdir = pathlib.Path(_WORKDIR.value)
    lead = jax.process_index() == 0
    if _SEEDS.value:
        runs = {"pretrained": [], **({"scratch": []} if _COMPARE_SCRATCH.value else {})}
        for seed in _SEEDS.value:
            config = copy.deepcopy(_CONFIG.value)
            config.seed = int(seed)
            runs["pretrained"].append(finetune.run(config, workdir / f"seed_{seed}", predict=_PREDICT.value))
            if lead:
                print(_show(f"seed {seed}", runs["pretrained"][-1]))
            if _COMPARE_SCRATCH.value:
                runs["scratch"].append(finetune.run(_scratch_config(config), workdir / "scratch" / f"seed_{seed}"))
                if lead:
                    print(_show(f"seed {seed} from scratch", runs["scratch"][-1]))
        if lead:
            _summarize(workdir, _SEEDS.value, runs)
        return
    config = _CONFIG.value
    results = finetune.run(config, workdir, predict=_PREDICT.value)
    if lead:
        print(_show("fine-tuned from " + str(config.train.init_checkpoint or "scratch"), results))
        for path in results.get("predictions", []):
            print(f"predictions: {path}")
    if _COMPARE_SCRATCH.value:
        scratch = finetune.run(_scratch_config(config), workdir / "scratch")
        if lead:
            metric = results["metric"]
            print(_show("from scratch", scratch))
            print(f"{metric}: pretrained {results['best']['value']:.4f} vs from scratch "
                  f"{scratch['best']['value']:.4f} on the same {results['num_steps']} steps")
            checkpoint.write_json(workdir / "comparison.json", {
                "metric": metric, "pretrained": results["best"], "scratch": scratch["best"]})


if __name__ == "__main__":
    cli.run(main)
