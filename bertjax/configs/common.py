"""Every config key, defined once. Experiment configs start from `get_config()` and set values.

The `model` group holds a `variant` (a row of `bertjax.model.VARIANTS`) and one key per `BertConfig`
field, None meaning "the variant's value"; the keys are generated from the dataclass so the two can
never disagree. Configs are locked: a key that is not defined here fails at once, with its name.
"""

import dataclasses

from ml_collections import config_dict

from bertjax.model import BertConfig


def model_config() -> config_dict.ConfigDict:
    model = config_dict.ConfigDict()
    model.variant = "base"
    for field in dataclasses.fields(BertConfig):
        model[field.name] = config_dict.placeholder(type(field.default))
    return model


def data_config() -> config_dict.ConfigDict:
    data = config_dict.ConfigDict()
    data.tokenizer = config_dict.placeholder(str)  # SentencePiece .model; WordPiece folder, vocab.txt, tokenizer.json
    data.lowercase = config_dict.placeholder(bool)  # lower-case before WordPiece; None = the tokenizer's own setting
    data.prepared_dir = config_dict.placeholder(str)  # made by tools/prepare_data.py
    data.max_seq_length = 128
    data.max_predictions_per_seq = 20  # BERT: 20 at length 128, 80 at 512
    data.mask_rate = 0.15
    data.whole_word_masking = False
    data.sentence_task = "nsp"  # nsp | sop | none
    data.short_seq_prob = 0.1
    data.packing = False
    data.max_examples_per_row = 4  # with packing
    data.num_workers = 0  # grain worker processes; 0 = in the main process
    return data


def optim_config() -> config_dict.ConfigDict:
    optim = config_dict.ConfigDict()
    optim.name = "adamw"  # adamw | lamb
    optim.learning_rate = 1e-4  # the peak, after warmup
    optim.b1 = 0.9
    optim.b2 = 0.999
    optim.eps = 1e-6
    optim.weight_decay = 0.01  # not on LayerNorm parameters and biases
    optim.schedule = "linear"  # linear | cosine | wsd | constant
    optim.warmup_steps = 10_000
    optim.warmup_fraction = config_dict.placeholder(float)  # if set: warmup as a share of training (BERT fine-tuning: 0.1)
    optim.end_lr_ratio = 0.0  # the final learning rate as a fraction of the peak
    optim.decay_fraction = 0.1  # wsd: the share of training spent decaying
    optim.clip_norm = 1.0  # global gradient norm; 0 = no clipping
    optim.layer_decay = 1.0  # layer-wise learning-rate decay (fine-tuning): layer i of N learns at decay**(N-i); 1 = off
    return optim


def train_config() -> config_dict.ConfigDict:
    train = config_dict.ConfigDict()
    train.num_steps = 1_000_000
    train.global_batch_size = 256  # sequences per update, over all processes and accumulation steps
    train.accumulation_steps = 1  # micro-batches per update; the update equals one batch of the whole size
    train.eval_batch_size = 256
    train.log_every = 100
    train.eval_every = 10_000  # 0 = only at the end
    train.checkpoint_every = 10_000
    train.keep_checkpoints = 3
    train.max_bad_steps = 0  # steps with a non-finite loss or gradient norm to skip (no update) before stopping
    train.init_checkpoint = config_dict.placeholder(str)  # weights to start from: a bertjax run or an HF folder
    # Speed switches (docs/performance.md measures each): the MLM head on the masked positions only ("masked")
    # or on every position ("all": the same loss, more work); donating the train state's buffers to the step.
    train.mlm_positions = "masked"
    train.donate_state = True
    # Live MFU in the training log: the chip's peak (TFLOP/s); unset: the data sheet's for known accelerators.
    train.peak_tflops = config_dict.placeholder(float)
    return train


def finetune_config() -> config_dict.ConfigDict:
    finetune = config_dict.ConfigDict()
    # a GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or stdlib; squad; ner; swag
    finetune.task = config_dict.placeholder(str)
    finetune.data_dir = config_dict.placeholder(str)  # the task's files (GLUE: the folder of CoLA/, SST-2/, ... or one of them)
    finetune.tfds_data_dir = config_dict.placeholder(str)  # read TFDS's prepared glue/* instead (tools/prepare_glue.py)
    finetune.num_epochs = 3.0  # sets train.num_steps from the training set's size; 0 = use train.num_steps
    finetune.skip_malformed_rows = False  # False: a row with the wrong number of fields stops with its file and line
    return finetune


def mesh_config() -> config_dict.ConfigDict:
    mesh = config_dict.ConfigDict()
    mesh.data = -1  # -1: the devices the other axes leave
    mesh.fsdp = 1
    mesh.tensor = 1
    mesh.rules = "dp"  # dp | fsdp | fsdp_tp: which parameter axes lie on which mesh axes (bertjax.sharding)
    return mesh


def squad_config() -> config_dict.ConfigDict:
    squad = config_dict.ConfigDict()
    squad.train_file = config_dict.placeholder(str)  # official SQuAD JSON, e.g. train-v1.1.json
    squad.validation_file = config_dict.placeholder(str)  # e.g. dev-v1.1.json
    squad.version_2 = False  # v2.0: unanswerable questions, null answers and the null threshold
    squad.doc_stride = 128  # tokens between the starts of a context's windows
    squad.max_query_length = 64  # question tokens kept
    squad.max_answer_length = 30  # tokens in a predicted answer
    squad.n_best_size = 20  # starts and ends tried per window, and answers kept per question
    squad.null_score_diff_threshold = 0.0  # v2.0: predict null when null score - best span score exceeds it
    # v2.0 metric: a question whose null odds exceed it scores as null (the official script's --na-prob-thresh)
    squad.na_prob_thresh = 1.0
    return squad


def ner_config() -> config_dict.ConfigDict:
    ner = config_dict.ConfigDict()
    ner.train_file = config_dict.placeholder(str)  # CoNLL-2003 format: word ... tag per line, blank between sentences
    ner.validation_file = config_dict.placeholder(str)
    ner.test_file = config_dict.placeholder(str)
    # A sentence longer than data.max_seq_length - 2 sub-tokens is tagged in overlapping windows, each starting
    # about this many sub-tokens after the last; None: half a window
    ner.stride = config_dict.placeholder(int)
    return ner


def swag_config() -> config_dict.ConfigDict:
    swag = config_dict.ConfigDict()
    swag.train_file = config_dict.placeholder(str)  # swagaf's train.csv: sent1, sent2, ending0..endingK, label
    swag.validation_file = config_dict.placeholder(str)  # val.csv
    swag.test_file = config_dict.placeholder(str)  # test.csv (no label column)
    return swag


def classify_config() -> config_dict.ConfigDict:
    """Fine-tuning on the user's own labelled files (finetune.task=classify, bertjax.tasks.classify)."""
    classify = config_dict.ConfigDict()
    # Any format bertjax.data.records reads, told by the name: .csv, .tsv, .jsonl (.gz, .zst), .parquet.
    classify.train_file = config_dict.placeholder(str)
    classify.validation_file = config_dict.placeholder(str)
    classify.test_file = config_dict.placeholder(str)  # its label column is optional
    classify.text_a_column = "text_a"
    classify.text_b_column = config_dict.placeholder(str)  # the second text of a pair; unset: single texts
    classify.label_column = "label"
    # HF's names: single_label_classification | regression (a float per row) | multi_label_classification
    classify.problem_type = "single_label_classification"
    # Comma-separated label names in id order; unset: the training file's labels, sorted (as numbers when all are
    # integers, else as strings).
    classify.labels = config_dict.placeholder(str)
    classify.unseen_labels = "error"  # error | wrong: a dev/test label outside the label set counts as wrong
    # Multi-label rows: a JSON list in .jsonl files (and a list column in Parquet); in CSV, TSV and Parquet string
    # columns, one string of names joined by this separator ("spam|ads"; an empty string: no label).
    classify.label_separator = "|"
    return classify


def get_config() -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    config.seed = 0  # parameter initialisation, data order and masks, dropout
    # What tools/pretrain.py trains: "pretraining" (BERT: masked LM + sentence task), or a language-model
    # objective of bertjax.tasks.causal_lm: causal_lm (GPT-style), shifted_lm_unmasked, forward_backward, elmo.
    config.task = "pretraining"
    config.model = model_config()
    config.data = data_config()
    config.optim = optim_config()
    config.train = train_config()
    config.finetune = finetune_config()
    config.mesh = mesh_config()
    config.squad = squad_config()
    config.ner = ner_config()
    config.swag = swag_config()
    config.classify = classify_config()
    return config


def _parse(value: str, kind: type):
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false, found {value!r}")
        return value.lower() in ("true", "1")
    return kind(value)


def apply_arg(config: config_dict.ConfigDict, arg: str | None) -> config_dict.ConfigDict:
    """Apply the `:arg` of `--config path.py:arg`: comma-separated `dotted.key=value` overrides,
    typed like the key they replace (`bertjax/configs/bert_base.py:model.dtype=bfloat16,seed=3`)."""
    for item in filter(None, (arg or "").split(",")):
        dotted, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"Config argument {item!r} is not of the form key=value.")
        *parents, leaf = dotted.strip().split(".")
        group = config
        for index, name in enumerate(parents):
            if name not in group or not isinstance(group[name], config_dict.ConfigDict):
                raise KeyError(f"Config argument {item!r}: no config group {'.'.join(parents[:index + 1])!r}.")
            group = group[name]
        if leaf not in group:
            raise KeyError(f"Config argument {item!r}: unknown key {dotted!r}; "
                           f"keys there: {sorted(group.keys())}.")
        try:
            group[leaf] = _parse(value.strip(), group.get_type(leaf))
        except ValueError as error:
            raise ValueError(f"Config argument {item!r}: {error}.") from None
    config.lock()
    return config
