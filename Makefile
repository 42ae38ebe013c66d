# Quick start: `make demo` (the main job on the built-in reference model) and `make test`.
# Both create the virtual environment on first use.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast venv model integer-transformer tuned-model regress clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/inc-mt demo

# two workers (one per core here); a file's tests stay on one worker, so module fixtures are built once
PYTEST := $(BIN)/python -m pytest -q -n 2 --dist loadfile

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# Retrain and re-export the reference model (about 60 minutes of training on 2 cores; resumable).
model: $(STAMP)
	$(BIN)/python -m inc_transformer_mt.model.train --workdir work/train --time-budget-min 60
	$(BIN)/python -m inc_transformer_mt.model.export --workdir work/train --out inc_transformer_mt/reference

# Lin et al. (2020)'s Integer Transformer (polynomial attention, L1 LayerNorm) on the reference model's data,
# tokenizer, size and budget (60 minutes of training on 2 cores, at most 30 epochs; resumable), for
# recipes/integer_transformer_fully_8bit.yaml.
integer-transformer: $(STAMP)
	$(BIN)/python -m inc_transformer_mt.model.train --workdir work/train_integer_transformer \
		--attention polynomial --layer-norm l1 --tokenizer inc_transformer_mt/reference/spm.model \
		--max-epochs 30 --time-budget-min 60
	$(BIN)/python -m inc_transformer_mt.model.export --workdir work/train_integer_transformer --out work/integer_transformer

# The committed tuned INT8 reference model (default backend; runs with ITEX's kernels) and its manifest,
# re-baselined on the first 200 test sentences that CI checks. Re-run deliberately, then review and commit.
tuned-model: $(STAMP)
	$(BIN)/inc-mt tune recipes/reference_kl.yaml --set backend=default \
		--set outputs.dir=../inc_transformer_mt/reference_int8 --set outputs.overwrite=replace
	$(BIN)/inc-mt regress inc_transformer_mt/reference_int8 --limit 200 --rebaseline --speed

# The CI regression check of the committed tuned model (also run by the test suite).
regress: $(STAMP)
	mkdir -p out
	$(BIN)/inc-mt regress inc_transformer_mt/reference_int8 --limit 200 --junit out/regress.xml

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
