"""CoNLL-2003 named-entity tagging, BERT's fine-tuning recipe: length 128, batch 32, 5e-5, 3 epochs, 10%
warmup. Give the files (CoNLL format, IOB1 or IOB2) and the pretrained weights on the command line:
    --config.ner.train_file=eng.train --config.ner.validation_file=eng.testa --config.ner.test_file=eng.testb
    --config.data.tokenizer=... --config.train.init_checkpoint=...
"""

from configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.data.max_seq_length = 128
    config.optim.learning_rate = 5e-5
    # CoNLL-2003 train: 14,041 sentences; 3 epochs of 32 = 1,317 steps.
    config.train.num_steps = 1317
    config.optim.warmup_steps = 132
    config.train.global_batch_size = 32
    config.train.eval_batch_size = 64
    config.train.log_every = 50
    config.train.eval_every = 0
    config.train.checkpoint_every = 500
    return common.apply_arg(config, arg)
