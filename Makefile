# gdirty — the two commands a newcomer needs:
#   make run    set everything up, then serve the bundled example:
#               gunicorn (HTTP on 127.0.0.1:8000) -> gdirty -> Python workers
#   make test   set everything up, then run every test (Go with -race,
#               golden vectors, interop against real gunicorn)

PYTHON  ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
GDIRTY  := bin/gdirty
# gdirty with cluster support and the metrics endpoint; the lean
# bin/gdirty (-tags lean) execs it, found next to itself, whenever a
# cluster setting or --metrics-bind is given.
GDIRTY_CLUSTER := bin/gdirty-cluster
NATS_SERVER := bin/nats-server
# Build tags: the lean gdirty leaves out cluster support and the metrics
# endpoint (lean); neither build needs urfave/cli's man/markdown generator.
LEAN_TAGS := lean,urfave_cli_no_docs
FULL_TAGS := urfave_cli_no_docs
GOFILES := $(shell find . -name '*.go' -not -path './.venv/*') go.mod go.sum $(wildcard pyshim/gdirty_pyshim/*.py)

.PHONY: setup build nats-server run test test-go test-py fuzz fuzz-short vet lint clean

setup: $(VENV)/.installed build $(NATS_SERVER)

# The pyshim package without the binary (tests use bin/gdirty); reinstalled
# when its files change, since gunicorn's master imports it from the venv
# in master mode.
$(VENV)/.installed: requirements.txt pyshim/pyproject.toml pyshim/hatch_build.py $(wildcard pyshim/gdirty_pyshim/*.py)
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	GDIRTY_BUILD_BINARY=0 $(VPY) -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall ./pyshim
	touch $@

build: $(GDIRTY) $(GDIRTY_CLUSTER)

# Static, without cgo: gdirty needs nothing from libc, and not mapping libc
# and the dynamic loader saves 1.4 MiB of resident memory.
$(GDIRTY): $(GOFILES)
	CGO_ENABLED=0 go build -tags $(LEAN_TAGS) -o $(GDIRTY) ./cmd/gdirty

$(GDIRTY_CLUSTER): $(GOFILES)
	CGO_ENABLED=0 go build -tags $(FULL_TAGS) -o $(GDIRTY_CLUSTER) ./cmd/gdirty

# The NATS server the cluster tests run, built from the Go module pinned in
# go.mod (cluster/tools.go): no download step of its own.
nats-server: $(NATS_SERVER)
$(NATS_SERVER): go.mod go.sum
	go build -o $(NATS_SERVER) github.com/nats-io/nats-server/v2

# gunicorn's own master runs gdirty (master mode: one import line in
# examples/basic/gunicorn.conf.py). Ctrl-C or SIGTERM stops everything.
run: setup
	VENV=$(VENV) GDIRTY_BINARY=$(CURDIR)/$(GDIRTY) exec scripts/run-example.sh

# Platform wheels (dist/*.whl) with the static gdirty binaries in them, the
# lean gdirty and gdirty-cluster, one per GOARCH:platform-tag; installing
# one needs no Go. The binaries are static (CGO_ENABLED=0), so the oldest
# manylinux tag fits.
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyshim/pyproject.toml)
WHEEL_PLATFORMS ?= amd64:manylinux_2_17_x86_64.manylinux2014_x86_64 arm64:manylinux_2_17_aarch64.manylinux2014_aarch64
BUILDPY := $(VENV)/bin/python
.PHONY: wheel test-wheel
wheel: $(VENV)/.build-tools
	@for p in $(WHEEL_PLATFORMS); do \
		arch=$${p%%:*}; plat=$${p#*:}; bin=dist/bin/linux-$$arch/gdirty; \
		echo "gdirty $(VERSION) linux/$$arch -> $$plat"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch go build -trimpath -tags $(LEAN_TAGS) \
			-ldflags "-s -w -X main.version=$(VERSION)" -o $$bin ./cmd/gdirty || exit 1; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch go build -trimpath -tags $(FULL_TAGS) \
			-ldflags "-s -w -X main.version=$(VERSION)" -o $$bin-cluster ./cmd/gdirty || exit 1; \
		(cd pyshim && GDIRTY_WHEEL_BINARY=$(CURDIR)/$$bin GDIRTY_WHEEL_CLUSTER_BINARY=$(CURDIR)/$$bin-cluster \
			GDIRTY_WHEEL_PLATFORM=$$plat \
			$(CURDIR)/$(BUILDPY) -m build --wheel --outdir $(CURDIR)/dist . >/dev/null) || exit 1; \
	done
	@ls -1 dist/*.whl

$(VENV)/.build-tools: $(VENV)/.installed
	$(VPY) -m pip install --quiet --disable-pip-version-check build==1.6.1
	touch $@

# Master mode on every listed gunicorn release (its tests are also in the
# compatibility subset that `make test` runs).
.PHONY: test-master-matrix
test-master-matrix:
	$(MAKE) --no-print-directory matrix PYTEST_ARGS=tests/test_master_mode.py

# CI: the x86_64 wheel installed into a fresh venv with no Go on PATH, then
# examples/basic served through it under gunicorn's master (HTTP request ->
# dirty worker answer), then stopped with nothing left running.
# Then a source build (pip wheel ./pyshim with Go present) must compile
# both binaries into a wheel for this machine.
test-wheel:
	$(MAKE) --no-print-directory wheel WHEEL_PLATFORMS=amd64:manylinux_2_17_x86_64.manylinux2014_x86_64
	$(PYTHON) scripts/wheel_smoke.py dist/gdirty-$(VERSION)-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
	$(PYTHON) scripts/source_build_check.py

# Both builds: the full one (cluster support, metrics endpoint) and the lean one.
vet:
	go vet ./...
	go vet -tags lean ./...

# staticcheck, pinned; run through the module proxy so nothing is installed
# by hand.
STATICCHECK ?= go run honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint: vet
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
		if [ -n "$$unformatted" ]; then echo "gofmt -w needed: $$unformatted" >&2; exit 1; fi
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags lean ./cmd/...

test: setup lint test-go fuzz-short test-py test-compat test-wheel

test-go:
	go test -race -count=1 ./...
	go test -race -count=1 -tags lean ./cmd/...

test-py: setup
	$(VPY) -m pytest -q tests/

# A few seconds of fuzzing per target on every test run, so the targets
# never rot; `make fuzz FUZZTIME=5m` for a real session. The short run is
# bounded by a count of executions, not a duration: go1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" failure when
# a duration -fuzztime expires while a worker is mid-call (golang/go#75804,
# fixed in go1.27), which failed CI once with no failing input.
fuzz-short:
	$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

# Bounded fuzzing of every decoder (FUZZTIME per target).
FUZZTIME ?= 10s
FUZZPKGS ?= ./compat ./compat/v0 ./arbiter/stash ./worker ./cmd/gdirty ./cluster
fuzz:
	for p in $(FUZZPKGS); do \
		for t in $$(go test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
			go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; \
	done

clean:
	rm -rf bin $(VENV) dist .venv-gunicorn-*

# ---------------------------------------------------------------------------
# gunicorn version matrix. gunicorn-versions.txt lists every supported
# release; each gets its own venv (.venv-gunicorn-X.Y.Z: that gunicorn,
# pytest and ./pyshim), made on first use and cached by its stamp file.
# The suite runs on the gunicorn of the interpreter that runs pytest.
GUNICORN_VERSIONS := $(shell awk '!/^\#/ && NF {print $$1}' gunicorn-versions.txt)
GUNICORN_PINNED   := $(shell awk '!/^\#/ && $$2 == "pinned" {print $$1}' gunicorn-versions.txt)
# The releases `make test` runs the compatibility subset on: the oldest and
# newest of every minor line other than the pinned release's own (whose
# oldest is listed too). The ONE place that list lives.
COMPAT_VERSIONS   ?= 25.0.0 25.0.3 25.1.0 25.2.0 25.3.0 26.0.0 26.1.0 26.2.0 27.0.0
PYTEST_VERSION    := $(shell awk -F'==' '$$1 == "pytest" {print $$2}' requirements.txt)
COMPAT_MARK       ?= compat
# What pytest runs in test-compat / matrix (narrow it: PYTEST_ARGS=tests/test_stash.py).
PYTEST_ARGS       ?= tests/

.PHONY: test-compat matrix venvs print-versions
.PRECIOUS: .venv-gunicorn-%/.installed

.venv-gunicorn-%/.installed: requirements.txt pyshim/pyproject.toml pyshim/hatch_build.py $(wildcard pyshim/gdirty_pyshim/*.py)
	@grep -qx '$*\( pinned\)\?' gunicorn-versions.txt || \
		{ echo "gunicorn $* is not listed in gunicorn-versions.txt" >&2; exit 1; }
	rm -rf .venv-gunicorn-$*
	$(PYTHON) -m venv .venv-gunicorn-$*
	@# pyshim is built from a copy: venvs made in parallel never share a build dir
	mkdir .venv-gunicorn-$*/src && cp -R pyshim .venv-gunicorn-$*/src/pyshim
	GDIRTY_BUILD_BINARY=0 .venv-gunicorn-$*/bin/python -m pip install --quiet --disable-pip-version-check \
		gunicorn==$* pytest==$(PYTEST_VERSION) ./.venv-gunicorn-$*/src/pyshim
	touch $@

venvs: $(foreach v,$(GUNICORN_VERSIONS),.venv-gunicorn-$(v)/.installed)

# Venvs are made 4 at a time (pip waits on the network more than on the CPU).
VENV_JOBS ?= 4
venv-stamps = $(foreach v,$(1),.venv-gunicorn-$(v)/.installed)

# The compatibility subset (tests marked `compat`) on each release of
# COMPAT_VERSIONS; every release is tried and the failures listed at the end.
test-compat: build
	@$(MAKE) --no-print-directory -j$(VENV_JOBS) $(call venv-stamps,$(COMPAT_VERSIONS))
	@failed=""; for v in $(COMPAT_VERSIONS); do \
		echo "== gunicorn $$v: compatibility subset"; \
		.venv-gunicorn-$$v/bin/python -m pytest -q -m $(COMPAT_MARK) -p no:cacheprovider $(PYTEST_ARGS) \
			|| failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "compatibility subset FAILED on gunicorn:$$failed" >&2; exit 1; fi

# The whole suite on every listed release (MATRIX_VERSIONS to narrow it).
MATRIX_VERSIONS ?= $(GUNICORN_VERSIONS)
matrix: build
	@$(MAKE) --no-print-directory -j$(VENV_JOBS) $(call venv-stamps,$(MATRIX_VERSIONS))
	@failed=""; for v in $(MATRIX_VERSIONS); do \
		echo "== gunicorn $$v: whole suite"; \
		.venv-gunicorn-$$v/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) \
			|| failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "whole suite FAILED on gunicorn:$$failed" >&2; exit 1; fi

print-versions:
	@echo "listed: $(GUNICORN_VERSIONS)"; echo "pinned: $(GUNICORN_PINNED)"; echo "compat: $(COMPAT_VERSIONS)"

# Side-by-side benchmark (bench/): gdirty vs gunicorn's own dirty arbiter vs
# a client talking straight to a worker. `make bench` is the full run (about
# 8 minutes on 2 cores) and rewrites docs/benchmarks.md; `make bench-smoke`
# runs every scenario very briefly (figures meaningless, harness checked).
.PHONY: bench bench-smoke
bench: setup
	$(VPY) bench/run.py --out docs/benchmarks.md --json bench/results/latest.json

bench-smoke: setup
	$(VPY) bench/run.py --smoke --json bench/results/smoke.json

# Chaos soak (~5 min): concurrent callers while workers are SIGKILLed and
# gdirty reloads; prints the figures. SOAK_DURATION in seconds.
SOAK_DURATION ?= 300
.PHONY: soak
soak: setup
	$(VPY) tests/soak.py --duration $(SOAK_DURATION) --binary $(GDIRTY)
