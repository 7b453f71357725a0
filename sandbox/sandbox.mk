# Makefile fragment for the Kubernetes sandbox; the main Makefile does `include sandbox/sandbox.mk`.
# Self-contained: every recipe is a bash script under sandbox/ (see docs/sandbox.md).
#   make sandbox         build what is missing (cached in ~/.cache/gpucloud/bin) and start every region;
#                        a running sandbox is reused
#   make sandbox-build   only build (all components: kubernetes, etcd, kwok, helm, stripe-mock)
#   make sandbox-status  show each region's processes and /readyz
#   make sandbox-stop    stop every sandbox process by PID
#   make sandbox-env     print shell exports (eval "$(make -s sandbox-env)")

SANDBOX_SCRIPTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

.PHONY: sandbox sandbox-build sandbox-start sandbox-stop sandbox-status sandbox-env

sandbox:
	bash $(SANDBOX_SCRIPTS)/build.sh
	bash $(SANDBOX_SCRIPTS)/sandbox.sh start

sandbox-build:
	bash $(SANDBOX_SCRIPTS)/build.sh

sandbox-start:
	bash $(SANDBOX_SCRIPTS)/sandbox.sh start

sandbox-stop:
	bash $(SANDBOX_SCRIPTS)/sandbox.sh stop

sandbox-status:
	bash $(SANDBOX_SCRIPTS)/sandbox.sh status

sandbox-env:
	@bash $(SANDBOX_SCRIPTS)/sandbox.sh env
