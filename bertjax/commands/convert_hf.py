"""Convert an HF BERT folder, or a Hub model id in the local HF cache, into a bertjax run directory.

    bertjax convert_hf --checkpoint bert-base-uncased --output_dir runs/bert-base-uncased
    bertjax convert_hf --checkpoint path/to/hf_folder --output_dir runs/mine --head encoder

The folder needs config.json, model.safetensors (or pytorch_model.bin, read as tensors only; needs torch)
and the tokenizer (tokenizer.json, or vocab.txt with tokenizer_config.json). A Hub id is read from the local
HF cache (HF_HOME, HF_HUB_CACHE), never downloaded. The output holds config.json, config.py, tokenizer.json
and checkpoints/0/ with the parameters and a record of the head; every head the source has is kept.
`--config DIR/config.py` gives `bertjax pretrain` (or `finetune`) the model, the tokenizer and DIR as
init_checkpoint; `bertjax extract_features`, `predict` and `export` take DIR as --checkpoint.
"""

from absl import flags


_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "The HF BERT folder, or Hub id in the local HF cache, to "
                                  "convert.", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The bertjax run directory to write.", required=True)
_HEAD = flags.DEFINE_string("head", None, "Keep only this head (pretraining, encoder, sequence_classification, "
                            "question_answering, token_classification, multiple_choice; default: every head "
                            "config.json's architectures has).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output directory.")


def main(argv):
    del argv
    from bertjax import interop

    record = interop.import_hf(_CHECKPOINT.value, _OUTPUT_DIR.value, head=_HEAD.value, overwrite=_OVERWRITE.value)
    labels = f", labels {record['labels']}" if record.get("labels") else ""
    zero = f"; stored as zeros (unused by this head): {record['zero_filled']}" if record["zero_filled"] else ""
    print(f"{_OUTPUT_DIR.value}: head {record['head']}{labels}{zero}")
    print(f"start from it with --config {_OUTPUT_DIR.value}/config.py (its model, tokenizer and init_checkpoint), "
          f"or pass --checkpoint={_OUTPUT_DIR.value} to bertjax extract_features, predict and export")
