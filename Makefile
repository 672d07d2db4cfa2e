# `make test` and `make demo` each set up .venv on first use, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

# The edit loop: everything but the end-to-end runs marked `slow` (CI runs `make test`).
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

# The main job on the built-in corpus (the Python standard library's docstrings): tokenizer, shards, a look at
# the masked examples, pretraining of BERT-tiny with evaluation, then fine-tuning it to tell which package a
# docstring comes from, against the same model trained from scratch; last, the pretrained model exported as an
# HF folder. Reruns resume in runs/demo/.
demo: runs/demo/data/metadata.json
	$(PY) tools/show_batch.py --config bertjax/configs/bert_tiny.py --show 2
	$(PY) tools/pretrain.py --config bertjax/configs/bert_tiny.py --workdir runs/demo/pretrain --unigram_baseline
	$(PY) tools/finetune.py --config bertjax/configs/glue_demo.py --workdir runs/demo/finetune --compare_scratch
	$(PY) tools/export.py --checkpoint runs/demo/pretrain --hf_dir runs/demo/hf --overwrite

runs/demo/tokenizer.model: | $(STAMP)
	$(PY) tools/train_tokenizer.py --output $@ --vocab_size 2048

runs/demo/data/metadata.json: runs/demo/tokenizer.model
	$(PY) tools/prepare_data.py --tokenizer $< --output_dir runs/demo/data --overwrite

clean:
	rm -rf $(VENV) build *.egg-info runs/demo .jax_cache
