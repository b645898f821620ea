# chsnap — build, test and benchmark.
#
#   make            build bin/chsnap and the bundled test guest
#   make demo       set up a fresh machine and boot the default guest (README)
#   make test       the whole test suite: unit tests, then the end-to-end tests
#   make bench-boot boot-time benchmark, chsnap against QEMU
#   make bench-snapshot / bench-block / bench-net  save/restore, disk and network benchmarks

GO       ?= go
BIN      := bin
GUEST    := testdata/guest/build/guest.bzImage
E2E_TIME ?= 20m

.PHONY: all build guest deps demo test unit e2e e2e-nested fuzz vet bench-boot bench-block bench-net kernel clean

all: build

build: guest
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/chsnap ./cmd/chsnap
	cp $(GUEST) $(BIN)/chsnap-guest.bzImage

guest:
	$(MAKE) -s -C testdata/guest

# Debian packages the tests and benchmarks use; idempotent.
deps:
	@./.ci/deps.sh

# Fetch and unpack the Debian cloud kernel used as the Linux oracle.
kernel:
	./testdata/kernel/fetch.sh

demo: deps build
	./scripts/demo.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/

unit:
	$(GO) test -race -count=1 ./...

fuzz:
	./scripts/fuzz.sh

e2e: build kernel
	$(GO) test -tags e2e -count=1 -timeout $(E2E_TIME) -v ./e2e/

# Where this host has no usable /dev/kvm, run the KVM tests under nested KVM.
e2e-nested: build kernel
	./scripts/e2e-nested.sh

test: vet unit fuzz e2e e2e-nested

bench-boot: build
	./bench/boot.sh

bench-block: build
	./bench/block.sh

bench-net: build
	./bench/net.sh

bench-snapshot: build
	./bench/snapshot.sh

clean:
	rm -rf $(BIN) testdata/guest/build
