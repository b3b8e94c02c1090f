# All set-up is here: a fresh clone needs only `make train` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-slow lint bench clean docs bench-sf-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: letting pip choose it pulls the newest CUDA build.
$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/a3c train cartpole

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.cartpole
	$(BIN)/python -m bench.continuous --tasks pendulum

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# Regenerate the README's config reference from the dataclasses' field docs.
docs: $(STAMP)
	$(BIN)/python -c "import re,subprocess; t=subprocess.run(['$(BIN)/a3c','config','--reference'],capture_output=True,text=True,check=True).stdout; r=open('README.md').read(); b,e='<!-- config-reference:begin -->','<!-- config-reference:end -->'; open('README.md','w').write(re.sub(re.escape(b)+'.*?'+re.escape(e), lambda _: b+'\n'+t+e, r, flags=re.S))"

# Sample Factory pins gymnasium 0.29 and numpy 1.26: it gets a venv of its own for bench.vizdoom.
bench-sf-venv:
	$(PYTHON) -m venv bench/.sf-venv
	bench/.sf-venv/bin/pip install --quiet --upgrade pip
	bench/.sf-venv/bin/pip install --quiet torch==2.13.0
	bench/.sf-venv/bin/pip install --quiet sample-factory==2.1.1 vizdoom==1.3.2
