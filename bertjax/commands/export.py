"""Export a bertjax checkpoint: an HF folder that transformers loads, or bertjax's own parameter file.

    bertjax export --checkpoint runs/demo/pretrain --output_dir exported/hf
    bertjax export --checkpoint runs/sst2 --output_dir exported/sst2-params --format params

--format hf (the default) writes config.json, model.safetensors (HF names, float32) and the tokenizer files,
as the architecture of the checkpoint's head: BertForPreTraining, BertForSequenceClassification,
BertForQuestionAnswering, BertForTokenClassification or BertForMultipleChoice (--head=encoder writes
BertModel). --format params writes params.safetensors (bertjax names) and bertjax_config.json, which code
that imports only bertjax.model can load. Either folder appears complete or not at all.
"""

from absl import flags


_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A run directory (its latest checkpoint), its best/, or a "
                                  "step directory.", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The folder to write.", required=True)
_FORMAT = flags.DEFINE_enum("format", "hf", ["hf", "params"], "hf: an HF folder; params: params.safetensors + "
                            "bertjax_config.json.")
_HEAD = flags.DEFINE_string("head", None, "--format hf: the architecture to write, by head name (pretraining, "
                            "encoder, sequence_classification, ...; default: the checkpoint's head).")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "The run's tokenizer, where its config.json path has moved.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output directory.")


def main(argv):
    del argv
    from bertjax import interop

    if _FORMAT.value == "hf":
        summary = interop.export_hf(_CHECKPOINT.value, _OUTPUT_DIR.value, head=_HEAD.value,
                                    tokenizer_path=_TOKENIZER.value, overwrite=_OVERWRITE.value)
        print(f"{_OUTPUT_DIR.value}: {summary['architecture']} from step {summary['step']}, {summary['tensors']} "
              "tensors; " + ", ".join(summary["files"]))
    else:
        if _HEAD.value:
            raise ValueError("--head is for --format hf; --format params keeps the checkpoint's head.")
        summary = interop.export_params(_CHECKPOINT.value, _OUTPUT_DIR.value, overwrite=_OVERWRITE.value)
        print(f"{_OUTPUT_DIR.value}: head {summary['head']}, {summary['tensors']} tensors; "
              + ", ".join(summary["files"]))
