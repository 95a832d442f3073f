# robot_rl — two commands on a fresh machine:
#   make sim    set-up + headless training in simulation
#   make test   set-up + the test suite (all but `slow`)
# Set-up is idempotent: stamps in .venv/.stamps make a second run reinstall nothing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMPS := $(VENV)/.stamps
IFACE  := interfaces/robot_rl_interfaces
IFACE_BUILD := build/robot_rl_interfaces
PYTEST_ARGS ?=

.PHONY: setup sim test test-all bench clean distclean help

help:
	@echo "make sim       set up .venv and run headless training in simulation"
	@echo "make test      set up .venv and run the test suite (all but 'slow')"
	@echo "make test-all  the whole suite, 'slow' included"
	@echo "make bench     run the benchmarks under bench/ (JSON on stdout)"
	@echo "make clean     remove build outputs (keeps .venv)"

setup: $(STAMPS)/project

$(PY):
	$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 12) else "robot_rl needs Python 3.11 or 3.12 (the ROS 2 Kilted wheels), found %d.%d; set PYTHON=python3.11" % v)'
	$(PYTHON) -m venv $(VENV)

$(STAMPS)/pip: | $(PY)
	$(PIP) install --quiet --upgrade pip 'setuptools>=70,<80' wheel
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/torch: requirements/torch.txt $(STAMPS)/pip
	$(PIP) install --quiet -r requirements/torch.txt
	@touch $@

$(STAMPS)/ros: requirements/ros.txt $(STAMPS)/pip
	$(PIP) install --quiet -r requirements/ros.txt
	@touch $@

# The message package, built with plain cmake into the venv prefix (about half a minute).
$(STAMPS)/interfaces: $(STAMPS)/ros $(IFACE)/CMakeLists.txt $(IFACE)/package.xml $(wildcard $(IFACE)/msg/*.msg)
	@rm -rf $(IFACE_BUILD) && mkdir -p $(IFACE_BUILD)
	cd $(IFACE_BUILD) && cmake $(CURDIR)/$(IFACE) \
	    -DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) -DCMAKE_PREFIX_PATH=$(abspath $(VENV)) \
	    -DPython3_EXECUTABLE=$(abspath $(PY)) -DBUILD_TESTING=OFF > cmake.log 2>&1 \
	  || { cat cmake.log; exit 1; }
	$(MAKE) -C $(IFACE_BUILD) -j2 install > $(IFACE_BUILD)/build.log 2>&1 \
	  || { tail -n 60 $(IFACE_BUILD)/build.log; exit 1; }
	$(PY) -c 'from robot_rl_interfaces.msg import Transition'
	@touch $@

$(STAMPS)/project: $(STAMPS)/torch $(STAMPS)/interfaces setup.py pyproject.toml
	$(PIP) install --quiet --no-build-isolation -e '.[test,bench]'
	@touch $@

# The main job: headless training over the ROS 2 graph (robot-rl up sim: sim node, 2 x actor
# + safety, replay, learner as real processes over Fast DDS), two simulated Pandas learning
# `reach` until the learner's evaluation reaches 90 % (launch/config/sim_reach.yaml). Each run
# gets its own directory runs/sim_reach_<date>; the runner prints where everything went.
# DDS discovery stays on this machine unless you set ROS_AUTOMATIC_DISCOVERY_RANGE yourself.
SIM_CONFIG ?= launch/config/sim_reach.yaml
SIM_NAME   ?= sim_reach_$(shell date +%Y%m%d_%H%M%S)
SIM_ARGS   ?= --until-success 0.9 --max-time 1800
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
sim: setup
	$(VENV)/bin/robot-rl up sim --config $(SIM_CONFIG) --name $(SIM_NAME) $(SIM_ARGS)

test: setup
	$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/sim_steps.py

clean:
	rm -rf build install log .pytest_cache

distclean: clean
	rm -rf $(VENV)
