"""Convert an HF BERT folder into a bertjax run directory.

    python tools/convert_hf.py --hf_dir bert-base-uncased/ --output runs/bert-base-uncased

The folder needs config.json, model.safetensors (or pytorch_model.bin, read as tensors only; needs torch)
and the tokenizer (tokenizer.json, or vocab.txt with tokenizer_config.json). The output holds config.json,
config.py, tokenizer.json and checkpoints/0/ with the parameters and a record of the head; every head the
source has is kept. `--config DIR/config.py` gives tools/pretrain.py (or fine-tuning) the model, the tokenizer
and DIR as init_checkpoint; tools/extract_features.py and tools/export.py take it as --checkpoint.

The folder may also be named by the Hub id of a model in the local HF cache (bert-base-uncased,
org/name@revision): it is read from the cache offline, never downloaded (`bertjax.hub.resolve_hf`).
"""

from absl import flags

from bertjax import cli, convert, interop

_HF_DIR = flags.DEFINE_string("hf_dir", None, "The HF BERT folder to convert.")
_OUTPUT = flags.DEFINE_string("output", None, "The bertjax run directory to write.")
_HEAD = flags.DEFINE_enum("head", None, list(convert.HEADS),
                          "Keep only this head (default: config.json's architectures).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output directory.")
flags.mark_flags_as_required(["hf_dir", "output"])


def main(argv):
    del argv
    record = interop.import_hf(_HF_DIR.value, _OUTPUT.value, head=_HEAD.value, overwrite=_OVERWRITE.value)
    labels = f", labels {record['labels']}" if record.get("labels") else ""
    zero = f"; stored as zeros (unused by this head): {record['zero_filled']}" if record["zero_filled"] else ""
    print(f"{_OUTPUT.value}: head {record['head']}{labels}{zero}")
    print(f"start from it with --config {_OUTPUT.value}/config.py (its model, tokenizer and init_checkpoint), or "
          f"pass --checkpoint={_OUTPUT.value} to tools/extract_features.py and tools/export.py")


if __name__ == "__main__":
    cli.run(main)
