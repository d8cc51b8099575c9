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
# BENCH=kvm (or config,node,cluster,rfs) runs some of the groups only.
bench: build
	$(GO) run ./internal/tools/benchreport $(if $(BENCH),-only $(BENCH))

# The main job: see README.md. The script installs the packages it needs,
# builds (as build does), and runs the demo until Ctrl-C; DEMO_CI=1 makes it
# the non-interactive check that the tests run.
demo:
	SAFEKIT_DEMO_BIN=$(abspath $(BIN)) SAFEKIT_DEMO_BUILD=$(abspath $(BUILD)) ./scripts/demo.sh

# PREFIX is SAFE on the installed node (the unit says so); DESTDIR stages the
# tree elsewhere (packaging, the tests). safekit lands on PATH as
# /usr/local/bin/safekit: a link with the default PREFIX, otherwise a wrapper
# that gives the CLI its SAFE.
install: build
	install -d $(DESTDIR)$(PREFIX)/Application_Modules/generic $(DESTDIR)$(PREFIX)/docs/images \
		$(DESTDIR)/etc/systemd/system $(DESTDIR)/usr/local/bin
	install -m 0755 $(BIN)/safekit $(BIN)/safekitd $(DESTDIR)$(PREFIX)/
	install -m 0644 $(BUILD)/Application_Modules/generic/*.safe $(DESTDIR)$(PREFIX)/Application_Modules/generic/
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/docs/
	install -m 0644 docs/images/* $(DESTDIR)$(PREFIX)/docs/images/
	sed 's|/opt/safekit|$(PREFIX)|g' deploy/safekit.service > $(DESTDIR)/etc/systemd/system/safekit.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/safekit.service
	rm -f $(DESTDIR)/usr/local/bin/safekit
ifeq ($(PREFIX),/opt/safekit)
	ln -s $(PREFIX)/safekit $(DESTDIR)/usr/local/bin/safekit
else
	printf '#!/bin/sh\nSAFE="$${SAFE:-$(PREFIX)}"\nexport SAFE\nexec $(PREFIX)/safekit "$$@"\n' > $(DESTDIR)/usr/local/bin/safekit
	chmod 0755 $(DESTDIR)/usr/local/bin/safekit
endif
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

clean:
	rm -rf $(BIN) $(BUILD)
