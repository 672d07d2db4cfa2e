"""Continue text prompts with a forward language model trained by `bertjax pretrain` (task causal_lm).

    bertjax generate --checkpoint runs/demo/gpt --prompt "Return the" --prompt "This module"
    bertjax generate --checkpoint runs/demo/gpt --prompt "Return the" --temperature 0   # greedy

Each prompt starts as a document does in training ([CLS] first) and is continued until [SEP] (the end of a
document) or --max_new_tokens. Sampling takes --temperature, --top_k and --top_p; the same --seed gives the
same text.
"""

import json
import pathlib

from absl import flags

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A causal_lm run's directory (config.json, checkpoints/): "
                                  "its latest parameters.")
_PROMPTS = flags.DEFINE_multi_string("prompt", None, "A prompt; repeat the flag for a batch of prompts.")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "The tokenizer, if not the run's config.data.tokenizer.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 64, "At most this many tokens after each prompt.",
                                       lower_bound=0)
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0 picks the most likely token.",
                                  lower_bound=0)
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample only from the k most likely tokens (0: all).", lower_bound=0)
_TOP_P = flags.DEFINE_float("top_p", 0.95, "Sample only from the most likely tokens that make up this probability.",
                            lower_bound=0, upper_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.mark_flags_as_required(["checkpoint", "prompt"])


def load_model(workdir: pathlib.Path):
    """The model (a `BertForCausalLM`), its latest parameters and the resolved config of a causal_lm run."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from bertjax import runs
    from bertjax.heads import BertForCausalLM
    from bertjax.model import BertConfig

    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --checkpoint must be a run directory of bertjax pretrain.")
    config = json.loads(path.read_text())
    if config.get("task") != "causal_lm":
        raise ValueError(f"{path}: task={config.get('task')!r}; generation needs a forward language model "
                         "(a run with --config gpt_tiny, task causal_lm).")
    model = BertForCausalLM(BertConfig.from_config({**config["model"], "causal": True}))
    abstract = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))))
    return model, runs.load_params(workdir, abstract["params"]), config


def main(argv):
    del argv
    from bertjax import generate
    from bertjax.data import tokenizer

    model, params, config = load_model(pathlib.Path(_CHECKPOINT.value))
    tok = tokenizer.load_tokenizer(_TOKENIZER.value or config["data"]["tokenizer"], config["data"].get("lowercase"))
    sampling = generate.Sampling(_TEMPERATURE.value, _TOP_K.value, _TOP_P.value)
    prompts = [[tok.cls_id, *ids] for ids in tok.encode_batch(_PROMPTS.value)]
    continuations = generate.generate(model, params, prompts, max_new_tokens=_MAX_NEW_TOKENS.value,
                                      sampling=sampling, seed=_SEED.value, stop_ids=(tok.sep_id,))
    for prompt, continuation in zip(_PROMPTS.value, continuations):
        print(f"{prompt} ▸ {tok.decode(continuation)}")

