"""Fine-tune a pretrained BERT on a task and report its dev metrics; optionally write test predictions.

    bertjax finetune --config glue:task=sst2 --workdir runs/sst2 \\
        --config.train.init_checkpoint=runs/base --config.finetune.data_dir=glue_data --predict
    bertjax finetune --config glue_demo --workdir runs/demo/finetune --compare_scratch
    bertjax finetune --config squad:v2 --workdir runs/squad2 --config.train.init_checkpoint=runs/base \\
        --config.squad.train_file=train-v2.0.json --config.squad.validation_file=dev-v2.0.json --predict
    bertjax finetune --config ner --workdir runs/ner --config.train.init_checkpoint=runs/base \\
        --config.ner.train_file=eng.train --config.ner.validation_file=eng.testa --config.ner.test_file=eng.testb
    bertjax finetune --config classify --workdir runs/spam --config.train.init_checkpoint=runs/base \\
        --config.classify.train_file=train.csv --config.classify.validation_file=dev.csv \\
        --config.classify.test_file=test.csv --config.classify.text_a_column=text --predict

The model and tokenizer come from --config.train.init_checkpoint (a bertjax run directory or an HF BERT
folder); the new head starts fresh, and the run prints which parameters were loaded and which are new.
WORKDIR gets results.json (the best and the final dev metrics), best/ (the best parameters), and with
--predict predictions/ in the GLUE server's format (SST-2.tsv, MNLI-m.tsv, MNLI-mm.tsv, AX.tsv, ...), SQuAD's
(predictions.json, null_odds.json for v2.0, of the dev set), CoNLL's (test.conll, else validation.conll), or
for your own files (config classify) validation_predictions.tsv and validation_report.txt (per class),
and test_predictions.tsv with a test file.
--seeds=1,2,3 runs once per seed (WORKDIR/seed_N) and writes summary.json: median, mean and std.
--compare_scratch also trains the same model from random initialisation (WORKDIR/scratch) on the same budget
(with --seeds, once per seed, WORKDIR/scratch/seed_N, summarised in summary.json's `scratch_metrics`).
Running the same command again resumes.
--evaluate_only scores WORKDIR's best parameters (else its latest checkpoint, else train.init_checkpoint, an HF
folder with the task's head, say; --checkpoint names another) on the dev splits (and test splits with labels,
CoNLL's, as test/...) without training, and writes WORKDIR/evaluation.json. Every evaluation reports the
split's loss beside the task's metrics.
"""

import pathlib

from absl import flags

from bertjax import cli

_CONFIG = cli.DEFINE_config(training=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and predictions.", required=True)
_PREDICT = flags.DEFINE_bool("predict", False, "Write test-set predictions with the best parameters.")
_SEEDS = flags.DEFINE_list("seeds", None, "Run once per seed (WORKDIR/seed_N) and summarise across seeds.")
_COMPARE_SCRATCH = flags.DEFINE_bool(
    "compare_scratch", False, "Also fine-tune the same model from random initialisation and compare.")
_EVALUATE_ONLY = flags.DEFINE_bool("evaluate_only", False, "Score a checkpoint on the dev splits; no training.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "With --evaluate_only: the run, best/, step directory, HF "
                                  "folder or cached Hub id to score (default: WORKDIR's best, else its latest).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join JAX's multi-process runtime (see bertjax pretrain).")


def main(argv):
    del argv
    import jax

    from bertjax import finetune, sharding

    if _DISTRIBUTED.value:
        sharding.initialize_distributed(None, None, None)
    workdir = pathlib.Path(_WORKDIR.value)
    report = print if jax.process_index() == 0 else (lambda line: None)
    if _EVALUATE_ONLY.value:
        results = finetune.evaluate_only(_CONFIG.value, workdir, _CHECKPOINT.value)
        report(f"{results['checkpoint']}: " + ", ".join(f"{name} {value:.4f}"
                                                        for name, value in results["metrics"].items()))
        report(f"metrics: {workdir / 'evaluation.json'}")
    elif _SEEDS.value:
        finetune.run_seeds(_CONFIG.value, workdir, _SEEDS.value, predict=_PREDICT.value,
                           compare_scratch=_COMPARE_SCRATCH.value, report=report)
    else:
        finetune.run_and_compare(_CONFIG.value, workdir, predict=_PREDICT.value,
                                 compare_scratch=_COMPARE_SCRATCH.value, report=report)
