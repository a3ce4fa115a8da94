# thinpool — run `make help` for the targets.
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 30s
TIMEOUT   ?= 15m
RACE      := $(if $(filter 0,$(ENABLE_RACE)),,-race)

.PHONY: help demo test test-invariants fmt-check vet fuzz fuzz-seeds bench check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

demo:  ## the main job end to end on a default pool (arrives with thinctl)
	@echo "make demo arrives with the thinctl CLI (issue 3); run 'make test' for now"

test: fmt-check vet  ## gofmt + vet + go test -race (ENABLE_RACE=0 drops -race); fuzz seeds run as tests
	$(GO) test $(RACE) -count=1 -timeout $(TIMEOUT) $(PKGS)

test-invariants:  ## go test -tags invariants
	$(GO) test -tags invariants -count=1 -timeout $(TIMEOUT) $(PKGS)

fmt-check:  ## gofmt -s -l must print nothing
	@out=$$(gofmt -s -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt -s would change:"; echo "$$out"; exit 1; fi

vet:  ## go vet
	$(GO) vet $(PKGS)

fuzz:  ## each Fuzz target for FUZZTIME (default 30s)
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:  ## Go benchmarks of the engine (see the closing notes for targets)
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./thinpool/ ./extent/ -benchmem

check: test test-invariants  ## what CI runs
