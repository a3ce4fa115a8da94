# thinpool — run `make help` for the targets.
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 30s
TIMEOUT   ?= 15m
RACE      := $(if $(filter 0,$(ENABLE_RACE)),,-race)

VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)

.PHONY: help build install uninstall demo docs test test-root crashtest test-invariants fmt-check vet lint fuzz bench bench-deps bench-quick bench-engine check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build:  ## build bin/thinctl
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/thinctl ./cmd/thinctl

# Where make install puts things; DESTDIR stages them (packaging).
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
INSTALLED  := $(BINDIR)/thinctl $(SYSTEMDDIR)/thinpool.service $(BASHCOMPDIR)/thinctl $(ZSHCOMPDIR)/_thinctl $(FISHCOMPDIR)/thinctl.fish

install: build  ## bin/thinctl, its man pages, bash/zsh/fish completion and the systemd unit (contrib/systemd) under DESTDIR/PREFIX (default /usr/local)
	install -D -m 0755 bin/thinctl $(DESTDIR)$(BINDIR)/thinctl
	rm -rf bin/man && ./bin/thinctl -q docs bin/man
	install -d $(DESTDIR)$(MANDIR)/man8
	install -m 0644 bin/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) $(DESTDIR)$(SYSTEMDDIR)
	./bin/thinctl completion bash > $(DESTDIR)$(BASHCOMPDIR)/thinctl
	./bin/thinctl completion zsh > $(DESTDIR)$(ZSHCOMPDIR)/_thinctl
	./bin/thinctl completion fish > $(DESTDIR)$(FISHCOMPDIR)/thinctl.fish
	sed 's|@BINDIR@|$(BINDIR)|g' contrib/systemd/thinpool.service.in > $(DESTDIR)$(SYSTEMDDIR)/thinpool.service
	chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/thinpool.service

uninstall:  ## remove what make install put in place (same DESTDIR and PREFIX)
	rm -f $(addprefix $(DESTDIR),$(INSTALLED)) $(DESTDIR)$(MANDIR)/man8/thinctl.8 $(DESTDIR)$(MANDIR)/man8/thinctl-*.8

demo: build  ## the main job end to end: pool, device, import, snapshot, diff, info (DEMO_DIR to keep it)
	./scripts/demo.sh

docs: build  ## man pages for every command into docs/man
	./bin/thinctl docs docs/man

test: fmt-check vet lint  ## gofmt + vet + lint + go test -race (ENABLE_RACE=0 drops -race), one package at a time (loop devices and mounts are machine-wide), then the root tests (skip when not root)
	$(GO) test $(RACE) -p 1 -count=1 -timeout $(TIMEOUT) $(PKGS)
	$(GO) test -tags integration -count=1 -timeout 20m ./test/

test-root:  ## only the root integration tests: FUSE, loop devices, filesystems, kill -9
	$(GO) test -tags integration -count=1 -timeout 20m -v ./test/

crashtest:  ## kill -9 the daemon under load CRASH_ROUNDS times (default 20); the thinpool crash tests with CRASH_ITERS random workloads (default 600) and DOUBLE_CRASH_SEEDS double crashes (default 20000)
	THINPOOL_CRASH_ROUNDS=$${CRASH_ROUNDS:-20} $(GO) test -tags integration -count=1 -timeout 60m -run 'Kill9' -v ./test/
	THINPOOL_CRASH_ITERS=$${CRASH_ITERS:-600} THINPOOL_DOUBLE_CRASH_SEEDS=$${DOUBLE_CRASH_SEEDS:-20000} $(GO) test -count=1 -timeout 60m -run 'Crash|Recovery' ./thinpool/

test-invariants:  ## go test -tags invariants
	$(GO) test -tags invariants -count=1 -timeout $(TIMEOUT) $(PKGS)

fmt-check:  ## gofmt -s -l must print nothing
	@out=$$(gofmt -s -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt -s would change:"; echo "$$out"; exit 1; fi

# Linters, pinned: go install puts each version under bin/tools once.
STATICCHECK_VERSION ?= v0.8.2
DEADCODE_VERSION    ?= v0.52.0
TOOLS       := $(CURDIR)/bin/tools
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)
DEADCODE    := $(TOOLS)/deadcode-$(DEADCODE_VERSION)

$(STATICCHECK):
	mkdir -p $(TOOLS)/new
	GOBIN=$(TOOLS)/new $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/new/staticcheck $@

$(DEADCODE):
	mkdir -p $(TOOLS)/new
	GOBIN=$(TOOLS)/new $(GO) install golang.org/x/tools/cmd/deadcode@$(DEADCODE_VERSION)
	mv $(TOOLS)/new/deadcode $@

lint: $(STATICCHECK) $(DEADCODE)  ## staticcheck and deadcode (pinned versions, installed into bin/tools); any finding fails
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags integration ./test/
	@out=$$($(DEADCODE) -test -tags integration ./...); \
	if [ -n "$$out" ]; then echo "deadcode: unreachable functions:"; echo "$$out"; exit 1; fi

vet:  ## go vet (with the integration tag too)
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration ./test/

fuzz:  ## each Fuzz target for FUZZTIME (default 30s)
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s $$pkg || exit 1; \
	  done; \
	done

BENCH_DEPS := fio qemu-utils qemu-system-common thin-provisioning-tools e2fsprogs util-linux
BENCH_ARGS ?= --runs 3

bench-deps:  ## apt-get install what make bench compares against (fio, qemu-img, qemu-storage-daemon, thin-provisioning-tools)
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_DEPS)

bench: build  ## the comparison harness (root, ~40 min): bench/results/results.json and REPORT.md with plots (BENCH_ARGS to change)
	./bin/thinctl bench $(BENCH_ARGS) --out bench/results --log bench/results/bench.log
	$(GO) run ./bench/cmd/benchreport -in bench/results/results.json -out bench/results

bench-quick: build  ## thinctl bench --quick: every workload once, small, under a minute
	./bin/thinctl bench --quick

bench-engine:  ## Go benchmarks of the engine alone (bench/engine.sh summarises them)
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./thinpool/ ./extent/ -benchmem

check: test test-invariants  ## make test, then the tests again with -tags invariants (CI runs make test)
