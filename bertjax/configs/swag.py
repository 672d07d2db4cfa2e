"""SWAG multiple choice with the BERT paper's recipe: AdamW at 2e-5, batch 16, 3 epochs, warmup over the first
10%, linear decay; sequences of 128 (HF's run_swag example; the original pytorch-pretrained-bert script used 80,
which fits SWAG's short contexts and endings as well).

    bertjax finetune --config swag --workdir runs/swag \\
        --config.train.init_checkpoint=runs/base --config.swag.train_file=swagaf/data/train.csv \\
        --config.swag.validation_file=swagaf/data/val.csv --config.swag.test_file=swagaf/data/test.csv --predict

Files are swagaf's CSV (sent1, sent2, ending0..ending3, label; the test file without label); each choice is
[CLS] sent1 [SEP] sent2 ending_i [SEP]. The model and the tokenizer come from `train.init_checkpoint`.
Each example is 4 sequences: a batch of 16 runs the encoder on 64 rows.
"""

from bertjax.configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.finetune.task = "swag"
    config.data.max_seq_length = 128
    config.optim.learning_rate = 2e-5
    config.optim.warmup_fraction = 0.1
    config.optim.weight_decay = 0.01
    config.finetune.num_epochs = 3.0
    config.train.global_batch_size = 16
    config.train.eval_batch_size = 64
    config.train.log_every = 100
    config.train.eval_every = 0  # evaluate at the end; set it to keep the best of several evaluations
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 1
    return common.apply_arg(config, arg)
