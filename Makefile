# Two commands for a newcomer: `make demo` and `make test`. Both bootstrap .venv by themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: demo test test-slow bench bootstrap ros1 clean

# ROS 1 from Debian, for `robots-ts deploy --ros1`, `robots-ts sim-robot --ros1` and their tests:
# installed by the bootstrap when it runs as root (as scripts/bootstrap.sh installs the Debian
# libraries); elsewhere optional: a hint is printed, and the ROS tests skip with the reason.
ROS1_DEBS := ros-core python3-rospy python3-std-msgs python3-sensor-msgs python3-trajectory-msgs
ROS1_PY := /usr/lib/python3/dist-packages

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh $(PYTHON) $(VENV)
	@$(MAKE) --no-print-directory ros1
	touch $(STAMP)

ros1:
	@if command -v roscore >/dev/null && (for m in rospy std_msgs sensor_msgs trajectory_msgs; do \
	    [ -d $(ROS1_PY)/$$m ] || exit 1; done); then \
	  echo "bootstrap: ROS 1 is installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "bootstrap: installing Debian packages: $(ROS1_DEBS)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(ROS1_DEBS); \
	else \
	  echo "bootstrap: ROS 1 is not installed (optional: deploy/sim-robot --ros1; its tests skip). Install it with:"; \
	  echo "  sudo apt-get install $(ROS1_DEBS)"; \
	fi

bootstrap: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robots-ts demo --run-dir runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(VENV)/bin/robots-ts bench envs --json

clean:
	rm -rf $(VENV) runs
