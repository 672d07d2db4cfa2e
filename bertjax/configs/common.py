"""Every config key, defined once. Experiment configs start from `get_config()` and set values.

The `model` group holds a `variant` (a row of `bertjax.model.VARIANTS`) and one key per `BertConfig`
field, None meaning "the variant's value"; the keys are generated from the dataclass so the two can
never disagree. Configs are locked: a key that is not defined here fails at once, with its name and the
nearest keys (`set_value`). Each key's comment here (for `model`, on `BertConfig`'s field) is its documentation:
`bertjax config show CONFIG` prints it beside the key's value and type (`key_comments`).
"""

import ast
import dataclasses
import difflib
import functools
import inspect
import io
import tokenize

from ml_collections import config_dict

from bertjax.model import BertConfig


def model_config() -> config_dict.ConfigDict:
    model = config_dict.ConfigDict()
    model.variant = "base"  # a row of bertjax.model.VARIANTS: tiny | mini | small | medium | base | large
    for field in dataclasses.fields(BertConfig):
        model[field.name] = config_dict.placeholder(type(field.default))
    return model


def data_config() -> config_dict.ConfigDict:
    data = config_dict.ConfigDict()
    data.tokenizer = config_dict.placeholder(str)  # unset: the copy in data.prepared_dir; else a folder, .model, vocab.txt
    data.lowercase = config_dict.placeholder(bool)  # lower-case before WordPiece; None = the tokenizer's own setting
    data.prepared_dir = config_dict.placeholder(str)  # the shards bertjax prepare_data made; pretraining needs it
    data.max_seq_length = 128  # tokens per row, [CLS] and [SEP] included
    data.max_predictions_per_seq = 20  # BERT: 20 at length 128, 80 at 512
    data.mask_rate = 0.15  # share of tokens chosen for prediction (80% [MASK], 10% random, 10% kept)
    data.eval_mask_rate = config_dict.placeholder(float)  # held-out evaluation's rate; None = mask_rate (0.15: BERT's)
    data.whole_word_masking = False  # choose whole words: every piece of a chosen word is predicted
    data.sentence_task = "nsp"  # nsp | sop | none
    data.short_seq_prob = 0.1  # share of pairs cut to a random shorter length, as BERT does
    data.packing = False  # several examples per row (attention kept within each): fewer padding tokens
    data.max_examples_per_row = 4  # with packing
    data.num_workers = 0  # grain worker processes; 0 = in the main process
    return data


def optim_config() -> config_dict.ConfigDict:
    optim = config_dict.ConfigDict()
    optim.name = "adamw"  # adamw | lamb
    optim.learning_rate = 1e-4  # the peak, after warmup
    optim.b1 = 0.9  # Adam/LAMB: decay of the first moment
    optim.b2 = 0.999  # Adam/LAMB: decay of the second moment
    optim.eps = 1e-6  # Adam/LAMB: added to the root of the second moment (BERT: 1e-6)
    optim.weight_decay = 0.01  # not on LayerNorm parameters and biases
    optim.schedule = "linear"  # linear | cosine | wsd | constant
    optim.warmup_steps = 10_000  # linear warmup from 0 to the peak; more than train.num_steps is clamped
    optim.warmup_fraction = config_dict.placeholder(float)  # if set: warmup as a share of training (BERT fine-tuning: 0.1)
    optim.end_lr_ratio = 0.0  # the final learning rate as a fraction of the peak
    optim.decay_fraction = 0.1  # wsd: the share of training spent decaying
    optim.clip_norm = 1.0  # global gradient norm; 0 = no clipping
    optim.layer_decay = 1.0  # layer-wise learning-rate decay (fine-tuning): layer i of N learns at decay**(N-i); 1 = off
    return optim


def train_config() -> config_dict.ConfigDict:
    train = config_dict.ConfigDict()
    train.num_steps = 1_000_000  # updates in the whole run (a resumed run continues towards it)
    train.global_batch_size = 256  # sequences per update, over all processes and accumulation steps
    train.accumulation_steps = 1  # micro-batches per update; the update equals one batch of the whole size
    train.eval_batch_size = 256  # sequences per evaluation batch, over all processes
    train.log_every = 100  # steps between training log lines (metrics.jsonl, TensorBoard, console)
    train.log_format = "auto"  # auto: a progress bar on a terminal, one plain line per log_every otherwise | bar | plain
    train.eval_every = 10_000  # 0 = only at the end
    train.checkpoint_every = 10_000  # steps between checkpoints (and one at the end)
    train.keep_checkpoints = 3  # the newest checkpoints kept; older ones are deleted
    train.max_bad_steps = 0  # steps with a non-finite loss or gradient norm to skip (no update) before stopping
    train.init_checkpoint = config_dict.placeholder(str)  # weights to start from: a bertjax run or an HF folder
    # The MLM head on the masked positions only ("masked") or on every position ("all": the same loss, more work);
    # docs/performance.md measures it
    train.mlm_positions = "masked"
    train.donate_state = True  # the step reuses the train state's buffers (less memory); off: for debugging
    # Live MFU in the training log: the chip's peak (TFLOP/s); unset: the data sheet's for known accelerators.
    train.peak_tflops = config_dict.placeholder(float)
    return train


def finetune_config() -> config_dict.ConfigDict:
    finetune = config_dict.ConfigDict()
    # a GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or stdlib; squad; ner; swag
    finetune.task = config_dict.placeholder(str)
    finetune.data_dir = config_dict.placeholder(str)  # the task's files (GLUE: the folder of CoLA/, SST-2/, ... or one of them)
    finetune.tfds_data_dir = config_dict.placeholder(str)  # read TFDS's prepared glue/* instead (bertjax prepare_glue)
    finetune.num_epochs = 3.0  # sets train.num_steps from the training set's size; 0 = use train.num_steps
    finetune.train_examples = 0  # train on this many labelled examples drawn by `seed` (a learning curve); 0 = all
    finetune.skip_malformed_rows = False  # False: a row with the wrong number of fields stops with its file and line
    return finetune


def mesh_config() -> config_dict.ConfigDict:
    mesh = config_dict.ConfigDict()
    mesh.data = -1  # -1: the devices the other axes leave
    mesh.fsdp = 1  # devices the parameters and optimizer state are sharded over (ZeRO-3 style)
    mesh.tensor = 1  # devices each layer's matrices are split over (tensor parallel)
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
    ner.validation_file = config_dict.placeholder(str)  # the dev split (CoNLL-2003: eng.testa)
    ner.test_file = config_dict.placeholder(str)  # tagged with --predict; scored too, as it has tags (eng.testb)
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
    classify.validation_file = config_dict.placeholder(str)  # the dev split, scored at every evaluation
    classify.test_file = config_dict.placeholder(str)  # its label column is optional
    classify.text_a_column = "text_a"  # the column (or JSON field) of the text
    classify.text_b_column = config_dict.placeholder(str)  # the second text of a pair; unset: single texts
    classify.label_column = "label"  # the column of the label
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
    # What bertjax pretrain trains: "pretraining" (BERT: masked LM + sentence task), or a language-model
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




# --- what each key may hold: checked at start-up, before any data is read or anything compiled ---------------

# Ranges, in interval notation: "[1, )" is at least 1, "(0, 1)" strictly between 0 and 1. A key left None
# (unset) is not checked. `validate` checks them all, and the relations between keys below.
LIMITS = {
    "seed": "[0, )",
    # model (None: the variant's value)
    "model.vocab_size": "[1, )", "model.hidden_size": "[1, )", "model.num_layers": "[1, )",
    "model.num_heads": "[1, )", "model.intermediate_size": "[1, )", "model.max_position_embeddings": "[1, )",
    "model.type_vocab_size": "[0, )", "model.rope_theta": "(0, )", "model.local_rope_theta": "(0, )",
    "model.global_attention_every": "[1, )", "model.local_attention_window": "[2, )", "model.hidden_dropout": "[0, 1)", "model.attention_dropout": "[0, 1)",
    "model.layer_norm_eps": "(0, )", "model.initializer_range": "[0, )",
    # data
    "data.max_seq_length": "[3, )", "data.max_predictions_per_seq": "[1, )", "data.mask_rate": "(0, 1)", "data.eval_mask_rate": "(0, 1)",
    "data.short_seq_prob": "[0, 1]", "data.max_examples_per_row": "[1, )", "data.num_workers": "[0, )",
    # optim
    "optim.learning_rate": "(0, )", "optim.b1": "[0, 1)", "optim.b2": "[0, 1)", "optim.eps": "(0, )",
    "optim.weight_decay": "[0, )", "optim.warmup_steps": "[0, )", "optim.warmup_fraction": "[0, 1]",
    "optim.end_lr_ratio": "[0, 1]", "optim.decay_fraction": "[0, 1]", "optim.clip_norm": "[0, )",
    "optim.layer_decay": "(0, 1]",
    # train
    "train.num_steps": "[1, )", "train.global_batch_size": "[1, )", "train.accumulation_steps": "[1, )",
    "train.eval_batch_size": "[1, )", "train.log_every": "[1, )", "train.eval_every": "[0, )",
    "train.checkpoint_every": "[0, )", "train.keep_checkpoints": "[1, )", "train.max_bad_steps": "[0, )",
    "train.peak_tflops": "(0, )",
    # fine-tuning
    "finetune.num_epochs": "[0, )", "finetune.train_examples": "[0, )", "squad.doc_stride": "[1, )", "squad.max_query_length": "[1, )",
    "squad.max_answer_length": "[1, )", "squad.n_best_size": "[1, )", "squad.na_prob_thresh": "[0, )",
    "ner.stride": "[1, )",
}


def _pair_room(config) -> str | None:
    data = config.data
    if config.finetune.task is not None:  # fine-tuning builds its own rows; the sentence task is pretraining's
        return None
    specials = 2 if data.sentence_task == "none" else 3  # [CLS] A [SEP] (B [SEP])
    least = specials + (1 if data.sentence_task == "none" else 2)
    if data.max_seq_length < least:
        return (f"data.max_seq_length={data.max_seq_length} leaves no room for a "
                f"{'segment' if specials == 2 else 'sentence pair'} with data.sentence_task={data.sentence_task!r}: "
                f"it must be at least {least} (BERT: 128)")
    return None


def _predictions_fit(config) -> str | None:
    data = config.data
    if config.finetune.task is not None:  # no masked positions in fine-tuning
        return None
    if data.max_predictions_per_seq > data.max_seq_length:
        return (f"data.max_predictions_per_seq={data.max_predictions_per_seq} is more than the "
                f"data.max_seq_length={data.max_seq_length} tokens of a row")
    return None


# Relations between keys: each returns what is wrong, or None.
RELATIONS = (_pair_room, _predictions_fit)


def _within(value, limits: str) -> bool:
    low, high = (bound.strip() for bound in limits[1:-1].split(","))
    above = not low or (value > float(low) if limits[0] == "(" else value >= float(low))
    below = not high or (value < float(high) if limits[-1] == ")" else value <= float(high))
    return above and below


def _describe(limits: str) -> str:
    low, high = (bound.strip() for bound in limits[1:-1].split(","))
    if not high:
        return f"more than {low}" if limits[0] == "(" else f"at least {low}"
    return f"in {limits}"


def problems(config: config_dict.ConfigDict) -> list[str]:
    """Every value of `config` outside its `LIMITS`, and every broken `RELATIONS`, as `key=value must be ...`."""
    found = []
    for dotted, limits in LIMITS.items():
        group, _, name = dotted.rpartition(".")
        holder = config[group] if group else config
        if group and group not in config:
            continue
        value = holder.get(name)
        if value is not None and not _within(value, limits):
            found.append(f"{dotted}={value} must be {_describe(limits)}")
    if not found:  # the relations assume each key is in range
        found += [problem for relation in RELATIONS if (problem := relation(config))]
    return found


def validate(config: config_dict.ConfigDict) -> None:
    """Raise a ValueError naming every key of `config` that cannot work (see `problems`)."""
    found = problems(config)
    if found:
        raise ValueError("Impossible config: " + "; ".join(found) + ". `bertjax config show NAME` lists the keys.")


# --- setting keys from text: the :arg of a config file and --config.KEY=VALUE -------------------------------


def flat_keys(config: config_dict.ConfigDict, prefix: str = "") -> list[tuple[str, object, type | None]]:
    """(dotted key, value, type) of every key under `config`: the top-level keys, then each group's, in the
    order this file defines them."""
    rows = []
    for name in config.keys():
        value, dotted = config[name], f"{prefix}{name}"
        if isinstance(value, config_dict.ConfigDict):
            rows.extend(flat_keys(value, f"{dotted}."))
        else:
            rows.append((dotted, value, config.get_type(name)))
    if prefix:
        return rows
    order = {key: index for index, key in enumerate(key_comments())}
    groups = {"": -1}  # the top-level keys first
    for key in order:  # a group's place: where its first key is defined
        groups.setdefault(key.rpartition(".")[0], len(groups))
    return sorted(rows, key=lambda row: (groups.get(row[0].rpartition(".")[0], len(groups)),
                                         order.get(row[0], len(order))))


def _suggestions(config: config_dict.ConfigDict, dotted: str) -> str:
    """' Did you mean X?' for the known keys nearest to `dotted`: the same key name in another group first
    (train.learning_rate -> optim.learning_rate), else the closest spellings."""
    known = [key for key, _, _ in flat_keys(config)]
    leaf = dotted.rsplit(".", 1)[-1]
    close = [key for key in known if key.rsplit(".", 1)[-1] == leaf]
    close = close or difflib.get_close_matches(dotted, known, n=3, cutoff=0.85)
    if not close:  # a misspelt key in the right group: compare the last parts only
        leaves = {key.rsplit(".", 1)[-1]: key for key in known}
        close = [leaves[name] for name in difflib.get_close_matches(leaf, list(leaves), n=3, cutoff=0.75)]
    return f" Did you mean {' or '.join(close)}?" if close else ""


def _parse(dotted: str, text: str, kind: type | None, current):
    """`text` as a value of the key's type. 'none' clears a key that is not a string."""
    expected = getattr(kind, "__name__", "any")
    if kind is not str and text.lower() in ("none", "null"):
        return None
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if kind is int:
            number = float(text)  # 1e6 and 1_000_000 are whole numbers too
            if not number.is_integer():
                raise ValueError
            return int(text) if text.lstrip("+-").replace("_", "").isdigit() else int(number)
        if kind is float:
            return float(text)
        return text if kind in (str, None) else kind(text)
    except ValueError:
        example = "true or false" if kind is bool else f"an {expected}" if expected == "int" else f"a {expected}"
        raise ValueError(f"config key {dotted}: {text!r} is not {example} (the key is {expected}; its value "
                         f"is {current!r}).") from None


def _unknown(config: config_dict.ConfigDict, dotted: str) -> str:
    return (f"unknown config key {dotted!r}.{_suggestions(config, dotted)} `bertjax config show CONFIG` lists "
            "every key.")


def set_value(config: config_dict.ConfigDict, dotted: str, text: str) -> None:
    """Set `dotted` (`optim.learning_rate`) from its text, typed like the key; an unknown key fails with the
    nearest known ones, a wrong type with the key, the value and the type expected."""
    *parents, leaf = dotted.strip().split(".")
    group = config
    for name in parents:
        if name not in group or not isinstance(group[name], config_dict.ConfigDict):
            raise KeyError(_unknown(config, dotted))
        group = group[name]
    if leaf not in group or isinstance(group[leaf], config_dict.ConfigDict):
        raise KeyError(_unknown(config, dotted))
    group[leaf] = _parse(dotted, text.strip(), group.get_type(leaf), group[leaf])


def apply_arg(config: config_dict.ConfigDict, arg: str | None) -> config_dict.ConfigDict:
    """Apply the `:arg` of `--config NAME:arg`: comma-separated `dotted.key=value` overrides, typed like the key
    they replace (`bert_base:model.dtype=bfloat16,seed=3`); then lock the config."""
    for item in filter(None, (arg or "").split(",")):
        dotted, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"Config argument {item!r} is not of the form key=value.")
        set_value(config, dotted, value)
    config.lock()
    return config


# --- each key's documentation: its comment here ---------------------------------------------------------------


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    return {token.start[0]: token.string.lstrip("#").strip()
            for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}


def _statement_comment(statement: ast.stmt, comments: dict[int, str], lines: list[str]) -> str:
    """The comment at the end of the statement, else the block of comment lines right above it, as one line."""
    trailing = comments.get(statement.end_lineno)
    if trailing and lines[statement.end_lineno - 1].lstrip()[:1] != "#":
        return trailing
    above, line = [], statement.lineno - 1
    while line in comments and lines[line - 1].lstrip().startswith("#"):
        above.insert(0, comments[line])
        line -= 1
    return " ".join(above)


@functools.cache
def key_comments() -> dict[str, str]:
    """Dotted key -> its comment in this file (`model.*`: on `BertConfig`'s fields), in order of definition."""
    from bertjax import model

    found = {}
    for module, groups in ((inspect.getmodule(key_comments), "groups"), (model, None)):
        source = inspect.getsource(module)
        comments, lines = _comments(source), source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if groups is None and isinstance(node, ast.ClassDef) and node.name == "BertConfig":
                for statement in node.body:
                    if isinstance(statement, ast.AnnAssign):
                        found[f"model.{statement.target.id}"] = _statement_comment(statement, comments, lines)
            elif groups and isinstance(node, ast.FunctionDef):
                for statement in node.body:
                    target = statement.targets[0] if isinstance(statement, ast.Assign) else None
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                        group = "" if target.value.id == "config" else f"{target.value.id}."
                        if not (isinstance(statement.value, ast.Call) and getattr(statement.value.func, "id", "")
                                .endswith("_config")):
                            found[f"{group}{target.attr}"] = _statement_comment(statement, comments, lines)
    return found
