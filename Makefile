# gdirty — the two commands a newcomer needs:
#   make run    set everything up, then serve the bundled example:
#               gunicorn (HTTP on 127.0.0.1:8000) -> gdirty -> Python workers
#   make test   set everything up, then run every test (Go with -race,
#               golden vectors, interop against real gunicorn)

PYTHON  ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
GDIRTY  := bin/gdirty
GOFILES := $(shell find . -name '*.go' -not -path './.venv/*') go.mod go.sum $(wildcard pyshim/gdirty_pyshim/*.py)

.PHONY: setup build run test test-go test-py fuzz fuzz-short vet lint clean

setup: $(VENV)/.installed build

$(VENV)/.installed: requirements.txt pyshim/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check ./pyshim
	touch $@

build: $(GDIRTY)

# Static, without cgo: gdirty needs nothing from libc, and not mapping libc
# and the dynamic loader saves 1.4 MiB of resident memory.
$(GDIRTY): $(GOFILES)
	CGO_ENABLED=0 go build -o $(GDIRTY) ./cmd/gdirty

run: setup
	VENV=$(VENV) scripts/run-example.sh

vet:
	go vet ./...

# staticcheck, pinned; run through the module proxy so nothing is installed
# by hand.
STATICCHECK ?= go run honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint: vet
	$(STATICCHECK) ./...

test: setup lint test-go fuzz-short test-py

test-go:
	go test -race -count=1 ./...

test-py: setup
	$(VPY) -m pytest -q tests/

# A few seconds of fuzzing per target on every test run, so the targets
# never rot; `make fuzz FUZZTIME=5m` for a real session.
fuzz-short:
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

# Bounded fuzzing of every decoder (FUZZTIME per target).
FUZZTIME ?= 10s
FUZZPKGS ?= ./compat ./arbiter/stash ./worker
fuzz:
	for p in $(FUZZPKGS); do \
		for t in $$(go test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
			go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; \
	done

clean:
	rm -rf bin $(VENV)

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
