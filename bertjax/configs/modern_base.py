"""ModernBERT-base pretraining (22 layers, hidden 768, 12 heads, GeGLU, rotary positions, alternating local and
global attention): the modern encoder recipe as configuration of the same model. `recipe(config)` sets the
switches and the training recipe; `modern_tiny` is the same recipe at BERT-tiny's size.

From ModernBERT's paper (Warner et al., 2024) and its released config: bias-free dense layers and LayerNorms,
pre-LN with an embedding and a final LayerNorm (no separate norm before layer 0's attention), GeGLU with an
inner width of 1,152, RoPE with base 160,000 in the global layers and 10,000 in the local ones, a local
window of 128 tokens, every third layer global, no segment embeddings, no dropout, 30% masking, no sentence
task, unpadded (here packed) rows, AdamW with b2 0.98, weight decay 1e-5 and a warmup-stable-decay schedule.
Not reproduced: StableAdamW's per-parameter update clipping (AdamW with global norm clipping instead), the
batch-size warmup, the output layers' depth-scaled initialisation, and the 8,192-token context extension
(training here is the first, 1,024-token phase).
"""

from bertjax.configs import common


def recipe(config):
    """Set the modern-encoder switches and training recipe on `config` (sizes and schedule length are left)."""
    config.model.update(
        position_embedding="rotary", rope_theta=160_000.0, local_rope_theta=10_000.0,
        global_attention_every=3, local_attention_window=128,
        gated_mlp=True, hidden_act="gelu", dense_bias=False, norm_bias=False,
        pre_layer_norm=True, first_layer_attention_norm=False, layer_norm_eps=1e-5,
        type_vocab_size=0, hidden_dropout=0.0, attention_dropout=0.0,
        pooler="prediction_head", pooling="cls")
    config.data.update(mask_rate=0.3, sentence_task="none", packing=True)
    config.optim.update(name="adamw", b1=0.9, b2=0.98, eps=1e-6, weight_decay=1e-5, schedule="wsd")
    return config


def get_config(arg: str | None = None):
    config = recipe(common.get_config())
    config.model.variant = "base"
    config.model.update(num_layers=22, intermediate_size=1152, vocab_size=50368, max_position_embeddings=8192)
    config.data.update(max_seq_length=1024, max_predictions_per_seq=320, max_examples_per_row=16)
    # 4,608 rows of 1,024 tokens (4.7M tokens an update); the paper's 1.7T tokens are some 360k updates, its
    # 3B-token warmup about 640 of them; the decay: its last 50B tokens (3% of training).
    config.train.update(global_batch_size=4608, num_steps=360_000)
    config.optim.update(learning_rate=8e-4, warmup_steps=640, decay_fraction=0.03)
    return common.apply_arg(config, arg)
