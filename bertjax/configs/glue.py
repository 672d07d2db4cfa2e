"""Fine-tuning on a GLUE task (or the built-in `stdlib` task) with BERT's recipe: AdamW at 2e-5, batch 32,
3 epochs, warmup over the first 10%, linear decay, sequences of 128.

    bertjax finetune --config glue:task=sst2 --workdir runs/sst2 \\
        --config.train.init_checkpoint=runs/base --config.finetune.data_dir=glue_data

The model and the tokenizer come from `train.init_checkpoint` (a bertjax run or an HF BERT folder); a
`model.*` key set here or on the command line (dropout, dtype) overrides the checkpoint's.
"""

from bertjax.configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.optim.learning_rate = 2e-5
    config.optim.warmup_fraction = 0.1
    config.optim.weight_decay = 0.01
    config.train.global_batch_size = 32
    config.train.eval_batch_size = 64
    config.train.log_every = 50
    config.train.eval_every = 0  # evaluate at the end; set it to select the best of several evaluations
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 1
    config.data.max_seq_length = 128
    config.finetune.num_epochs = 3.0
    return common.apply_arg(config, _task_shorthand(config, arg))


def _task_shorthand(config, arg: str | None) -> str:
    """`task=NAME` in the config argument sets finetune.task."""
    items = []
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        if key.strip() == "task":
            config.finetune.task = value.strip()
        else:
            items.append(item)
    return ",".join(items)
