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
# the masked examples, pretraining of BERT-tiny with evaluation, then fine-tuning it on 128 labels to tell which
# package a docstring comes from, for three seeds, against the same model trained from scratch on the same
# labels; last, the pretrained model exported as an HF folder. Reruns resume in runs/demo/.
BERTJAX := $(VENV)/bin/bertjax
DATA := --config.data.prepared_dir=runs/demo/data

demo: runs/demo/data/metadata.json
	$(BERTJAX) show_batch --config bert_tiny $(DATA) --show 2
	$(BERTJAX) pretrain --config bert_tiny $(DATA) --workdir runs/demo/pretrain --unigram_baseline
	$(BERTJAX) finetune --config glue_demo --config.train.init_checkpoint=runs/demo/pretrain \
		--workdir runs/demo/finetune --compare_scratch --seeds=1,2,3
	$(BERTJAX) export --checkpoint runs/demo/pretrain --output_dir runs/demo/hf --overwrite

runs/demo/tokenizer/tokenizer.model: | $(STAMP)
	$(BERTJAX) train_tokenizer --output_dir runs/demo/tokenizer --vocab_size 2048

runs/demo/data/metadata.json: runs/demo/tokenizer/tokenizer.model
	$(BERTJAX) prepare_data --tokenizer runs/demo/tokenizer --output_dir runs/demo/data --overwrite

clean:
	rm -rf $(VENV) build *.egg-info runs/demo .jax_cache
