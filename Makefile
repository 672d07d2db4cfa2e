# `make test` and `make demo` each set up .venv on first use, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

# The main job on the built-in corpus (the Python standard library's docstrings): what exists so far.
demo: $(STAMP)
	$(PY) tools/train_tokenizer.py --output runs/demo/tokenizer.model --vocab_size 8192
	$(PY) tools/prepare_data.py --tokenizer runs/demo/tokenizer.model --output_dir runs/demo/data --overwrite
	$(PY) tools/show_batch.py --config configs/bert_tiny.py
	$(PY) tools/model_info.py --config configs/bert_tiny.py

clean:
	rm -rf $(VENV) build *.egg-info
