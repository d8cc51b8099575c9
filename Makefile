# Targets: build, test, test-full, fuzz, bench, demo, install. See README.md.
GO      ?= go
BIN     := bin
BUILD   := build
PREFIX  ?= /opt/safekit
DESTDIR ?=
FUZZTIME ?= 60s

.PHONY: all build templates test test-full fuzz bench demo install clean vet

all: build

build: templates
	$(GO) build -o $(BIN)/safekit ./cmd/safekit
	$(GO) build -o $(BIN)/safekitd ./cmd/safekitd

# The project's own module templates, packed as .safe files.
templates:
	$(GO) run ./internal/tools/mksafe -src modules/templates -out $(BUILD)/Application_Modules/generic

vet:
	$(GO) vet ./...

# The tests CI runs (under 30 minutes on 2 cores). Tests that need root,
# namespaces or the corpus fail instead of skipping when CI=true.
test: build vet
	$(GO) test -count=1 -timeout 25m ./...

# Heavier variants: more fault runs, bigger images, more VMs.
test-full: build
	SAFEKIT_FULL=1 $(GO) test -count=1 -timeout 80m ./...

# Each fuzz target runs $(FUZZTIME); the seed corpora also run in make test.
fuzz:
	@set -e; for spec in \
		./safe:FuzzParseUserconfig ./safe:FuzzParseFragment ./safe:FuzzParseCluster ./safe:FuzzExpand \
		./safe/archive:FuzzRead; do \
		pkg=$${spec%%:*}; fn=$${spec##*:}; \
		echo "== $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

# Benchmarks and their targets, reported as met or missed (never fails).
bench: build
	$(GO) run ./internal/tools/benchreport

# The main job: see README.md.
demo: build
	./scripts/demo.sh

install: build
	install -d $(DESTDIR)$(PREFIX) $(DESTDIR)$(PREFIX)/Application_Modules/generic $(DESTDIR)/etc/systemd/system $(DESTDIR)/usr/local/bin
	install -m 0755 $(BIN)/safekit $(BIN)/safekitd $(DESTDIR)$(PREFIX)/
	install -m 0644 $(BUILD)/Application_Modules/generic/*.safe $(DESTDIR)$(PREFIX)/Application_Modules/generic/
	install -m 0644 deploy/safekit.service $(DESTDIR)/etc/systemd/system/safekit.service
	ln -sf $(PREFIX)/safekit $(DESTDIR)/usr/local/bin/safekit

clean:
	rm -rf $(BIN) $(BUILD)
