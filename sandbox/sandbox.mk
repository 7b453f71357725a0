# Makefile fragment for the Kubernetes sandbox; the main Makefile does `include sandbox/sandbox.mk`.
# Self-contained: every recipe is a bash script under sandbox/ (see docs/sandbox.md).
#   make sandbox         build what is missing (cached in ~/.cache/gpucloud/bin) and start every region;
#                        a running sandbox is reused
#   make sandbox-build   only build (all components: kubernetes, etcd, kwok, helm, stripe-mock)
#   make sandbox-status  show each region's processes and /readyz
#   make sandbox-stop    stop every sandbox process by PID
#   make sandbox-env     print shell exports (eval "$(make -s sandbox-env)")
#   make test-sandbox    start the tests' instance; test-sandbox-reset: start it afresh (make test does)
# Instances (docs/sandbox.md, "Instances"): the sandbox targets act on SANDBOX_INSTANCE, `default` (make
# run's) unless given (`make sandbox-status SANDBOX_INSTANCE=test`); the tests use TEST_SANDBOX_INSTANCE.

SANDBOX_SCRIPTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
SANDBOX_INSTANCE ?= default
TEST_SANDBOX_INSTANCE ?= test
SANDBOX_SH = GPUCLOUD_SANDBOX_INSTANCE=$(SANDBOX_INSTANCE) bash $(SANDBOX_SCRIPTS)/sandbox.sh
TEST_SANDBOX_SH = GPUCLOUD_SANDBOX_INSTANCE=$(TEST_SANDBOX_INSTANCE) bash $(SANDBOX_SCRIPTS)/sandbox.sh

.PHONY: sandbox sandbox-build sandbox-start sandbox-stop sandbox-status sandbox-env test-sandbox test-sandbox-reset \
	bench-sandbox

sandbox:
	bash $(SANDBOX_SCRIPTS)/build.sh
	$(SANDBOX_SH) start

sandbox-build:
	bash $(SANDBOX_SCRIPTS)/build.sh

sandbox-start:
	$(SANDBOX_SH) start

sandbox-stop:
	$(SANDBOX_SH) stop

sandbox-status:
	$(SANDBOX_SH) status

sandbox-env:
	@$(SANDBOX_SH) env

test-sandbox:
	bash $(SANDBOX_SCRIPTS)/build.sh
	$(TEST_SANDBOX_SH) start

# Waits for test sessions running on the instance (pytest by hand), then restarts it empty.
test-sandbox-reset:
	bash $(SANDBOX_SCRIPTS)/build.sh
	$(TEST_SANDBOX_SH) reset

# The benchmarks' instance (bench/kube.py); their dedicated clusters are the instance bench-dedicated.
bench-sandbox:
	bash $(SANDBOX_SCRIPTS)/build.sh
	GPUCLOUD_SANDBOX_INSTANCE=bench bash $(SANDBOX_SCRIPTS)/sandbox.sh start
