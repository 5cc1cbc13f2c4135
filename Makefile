# One-command set-up on a fresh Debian machine with Python 3.11 (root for apt-get).
#   make run    install, then train + evaluate the embedded default experiment
#   make test   install, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= workdirs/fashion_mnist_zsl
CONFIG ?= experiments/configs/fashion_mnist_zsl.py
DEBIAN_PACKAGES := dataset-fashion-mnist
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install run test clean

install: $(VENV)/.installed /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz:
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEBIAN_PACKAGES)

run: install
	$(BIN)/devise-jax train --config $(CONFIG) --workdir $(WORKDIR)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
