"""Export a bertjax checkpoint: an HF folder that transformers loads, and/or bertjax's own parameter file.

    python tools/export.py --checkpoint runs/demo/pretrain --hf_dir exported/hf
    python tools/export.py --checkpoint runs/sst2 --hf_dir exported/sst2 --params_dir exported/sst2-params

--hf_dir gets config.json, model.safetensors (HF names, float32) and the tokenizer files, as the
architecture of the checkpoint's head: BertForPreTraining, BertForSequenceClassification,
BertForQuestionAnswering, BertForTokenClassification or BertForMultipleChoice (--head=encoder writes
BertModel).
--params_dir gets params.safetensors (bertjax names) and bertjax_config.json, which code that imports only
bertjax.model can load.
"""

from absl import flags

from bertjax import cli, convert, interop

_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "A run directory (its latest checkpoint), its best/, or a step directory.")
_HF_DIR = flags.DEFINE_string("hf_dir", None, "Write an HF folder here.")
_PARAMS_DIR = flags.DEFINE_string("params_dir", None, "Write params.safetensors + bertjax_config.json here.")
_HEAD = flags.DEFINE_enum("head", None, list(convert.HEADS),
                          "The HF architecture to write (default: the checkpoint's head).")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "The run's tokenizer, where its config.json path has moved.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing output directories.")
flags.mark_flags_as_required(["checkpoint"])


def main(argv):
    del argv
    if not _HF_DIR.value and not _PARAMS_DIR.value:
        raise ValueError("Nothing to write: pass --hf_dir, --params_dir or both.")
    if _HF_DIR.value:
        summary = interop.export_hf(_CHECKPOINT.value, _HF_DIR.value, head=_HEAD.value,
                                    tokenizer_path=_TOKENIZER.value, overwrite=_OVERWRITE.value)
        print(f"{_HF_DIR.value}: {summary['architecture']} from step {summary['step']}, {summary['tensors']} tensors; "
              + ", ".join(summary["files"]))
    if _PARAMS_DIR.value:
        summary = interop.export_params(_CHECKPOINT.value, _PARAMS_DIR.value, overwrite=_OVERWRITE.value)
        print(f"{_PARAMS_DIR.value}: head {summary['head']}, {summary['tensors']} tensors; "
              + ", ".join(summary["files"]))


if __name__ == "__main__":
    cli.run(main)
