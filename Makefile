# oqmgr: Postfix's old queue manager, rebuilt in Rust.
#
#   make demo      a private Postfix instance whose queue manager is ours, delivering real mail
#   make test      every test: unit, property, fake-peer and real-Postfix interop (installs deps)
#   make bench     ours and Debian's C oqmgr side by side, in one run
#   make soak      faults from outside (SIGKILL anywhere, descriptor exhaustion, full queue
#                  file system), ours and the C oqmgr side by side; minutes, not in make test
#   make lint      rustfmt check, clippy -D warnings, mandoc -Tlint of the manual pages
#   make fuzz      coverage-guided fuzzing of every decoder of outside input (nightly, long)
#   make install   oqmgr into Postfix's daemon_directory, oqmgrctl into its command_directory
#                  (both stripped; KEEP_DEBUG=yes keeps their debug info under /usr/lib/debug),
#                  manual pages into sections 8 and 1

SHELL        := /bin/bash
CARGO        ?= cargo
PROGRAM      ?= oqmgr
POSTCONF     ?= postconf
DESTDIR      ?=
MANDIR       ?= /usr/local/share/man
# Postfix's daemon_directory (where master(8) finds its daemons); Debian's when postconf is absent.
DAEMON_DIR   ?= $(shell $(POSTCONF) -h daemon_directory 2>/dev/null || echo /usr/lib/postfix/sbin)
# Postfix's command_directory (postqueue, postsuper, ...): where oqmgrctl goes.
COMMAND_DIR  ?= $(shell $(POSTCONF) -h command_directory 2>/dev/null || echo /usr/sbin)
BIN          := target/release/oqmgr
CTL_BIN      := target/release/oqmgrctl
MAN_PAGES    := man/oqmgr.8 man/oqmgrctl.1
# Installed programs are stripped (the release build keeps line tables for profiles). With
# KEEP_DEBUG=yes their debug info goes to DEBUG_DIR/.build-id/, where gdb and perf find it.
STRIP        ?= strip
OBJCOPY      ?= objcopy
KEEP_DEBUG   ?= no
DEBUG_DIR    ?= /usr/lib/debug

.PHONY: all build deps test lint demo bench soak fuzz lab-check install uninstall clean

all: build

build:
	$(CARGO) build --release --locked

# Everything the tests need on a fresh machine: Debian's Postfix 3.7 (configured as "No
# configuration", so that no system mail server starts), mandoc for the manual page check,
# python3 for the lab harness, and python3-prometheus-client, the real Prometheus text parser
# that checks `oqmgrctl metrics`. Rust crates come from crates.io through cargo itself.
deps:
	@command -v $(CARGO) >/dev/null || { echo "make: cargo not found: install a Rust toolchain" >&2; exit 1; }
	@missing=""; \
	command -v postconf >/dev/null || missing="$$missing postfix"; \
	command -v mandoc >/dev/null || missing="$$missing mandoc"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || missing="$$missing python3-prometheus-client"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make: please install:$$missing (as root)" >&2; exit 1; fi; \
	  echo "make: installing$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Unit, property, fake-peer and real-Postfix interop tests; the last line sums them up.
test: deps lint
	@mkdir -p target
	set -o pipefail; OQMGR_REQUIRE_POSTFIX=1 $(CARGO) test --locked --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets --quiet -- -D warnings
	@# The fuzz targets build against the library (stable is enough to check them).
	cd fuzz && $(CARGO) check --locked --bins --quiet
	@for page in $(MAN_PAGES); do \
	  out=$$(mandoc -Tlint -W warning $$page 2>&1); \
	  if [ -n "$$out" ]; then echo "$$out"; echo "make: $$page is not mandoc -Tlint clean" >&2; exit 1; fi; \
	done

# A private Postfix instance (own config and spool under /tmp, loopback only, /etc/postfix
# untouched) whose qmgr service runs our binary: mail in, delivered, log lines and figures.
demo: deps build
	tests/lab/demo $(BIN)

# Ours and Debian's C oqmgr side by side in one run, interleaved: medians and ratios.
bench: deps build
	tests/lab/bench --ours $(BIN)

# Coverage-guided fuzzing (cargo-fuzz, nightly; installs both when missing) of every decoder
# of outside input, FUZZ_RUNS cases per target, one target at a time; prints a table of cases
# run and findings, fails if any target found a crash, hang or OOM. Not part of `make test`.
# FUZZ_TARGETS picks targets (record envelope attr config trigger memory status queue_id).
FUZZ_RUNS    ?= 1000000
FUZZ_TARGETS ?=
fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_TARGETS="$(FUZZ_TARGETS)" fuzz/run.sh

# tests/interop/faults.rs: its #[ignore]d scenarios, one at a time (they load the machine),
# with a `figures:` line per queue manager at the end.
soak: deps build
	@mkdir -p target
	set -o pipefail; OQMGR_REQUIRE_POSTFIX=1 $(CARGO) test --release --locked --test interop -- \
	  --ignored --nocapture --test-threads 1 faults:: 2>&1 | tee target/soak.log
	@grep '^figures:' target/soak.log || true

# The lab harness's own end-to-end check (with the C oqmgr).
lab-check: deps
	tests/lab/selftest

# On Debian the C oqmgr owns $(DAEMON_DIR)/oqmgr; divert it (kept as oqmgr.distrib) instead of
# overwriting a packaged file. Staged installs (DESTDIR) just copy.
install: build
	install -d $(DESTDIR)$(DAEMON_DIR) $(DESTDIR)$(COMMAND_DIR) $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(MANDIR)/man1
	@if [ -z "$(DESTDIR)" ] && [ "$(PROGRAM)" = oqmgr ] && command -v dpkg-divert >/dev/null \
	    && dpkg -S $(DAEMON_DIR)/oqmgr >/dev/null 2>&1; then \
	  dpkg-divert --local --rename --divert $(DAEMON_DIR)/oqmgr.distrib --add $(DAEMON_DIR)/oqmgr; \
	fi
	install -m 0755 -s --strip-program=$(STRIP) $(BIN) $(DESTDIR)$(DAEMON_DIR)/$(PROGRAM)
	install -m 0644 man/oqmgr.8 $(DESTDIR)$(MANDIR)/man8/oqmgr.8
	install -m 0755 -s --strip-program=$(STRIP) $(CTL_BIN) $(DESTDIR)$(COMMAND_DIR)/oqmgrctl
	@if [ "$(KEEP_DEBUG)" = yes ]; then for b in $(BIN) $(CTL_BIN); do \
	  id=$$(readelf -n $$b | sed -n 's/.*Build ID: //p'); [ -n "$$id" ] || continue; \
	  install -d $(DESTDIR)$(DEBUG_DIR)/.build-id/$${id:0:2}; \
	  $(OBJCOPY) --only-keep-debug --compress-debug-sections $$b \
	    $(DESTDIR)$(DEBUG_DIR)/.build-id/$${id:0:2}/$${id:2}.debug; \
	  echo "debug info of $$b: $(DESTDIR)$(DEBUG_DIR)/.build-id/$${id:0:2}/$${id:2}.debug"; \
	done; fi
	install -m 0644 man/oqmgrctl.1 $(DESTDIR)$(MANDIR)/man1/oqmgrctl.1
	@echo "installed $(DESTDIR)$(DAEMON_DIR)/$(PROGRAM) and $(DESTDIR)$(COMMAND_DIR)/oqmgrctl;"
	@echo "now set the qmgr row's command to $(PROGRAM)"
	@echo "in master.cf (see etc/master.cf.oqmgr) and run 'postfix reload'."

uninstall:
	rm -f $(DESTDIR)$(DAEMON_DIR)/$(PROGRAM) $(DESTDIR)$(MANDIR)/man8/oqmgr.8
	rm -f $(DESTDIR)$(COMMAND_DIR)/oqmgrctl $(DESTDIR)$(MANDIR)/man1/oqmgrctl.1
	@for b in $(BIN) $(CTL_BIN); do [ -f $$b ] || continue; \
	  id=$$(readelf -n $$b | sed -n 's/.*Build ID: //p'); [ -n "$$id" ] || continue; \
	  rm -f $(DESTDIR)$(DEBUG_DIR)/.build-id/$${id:0:2}/$${id:2}.debug; done
	@if [ -z "$(DESTDIR)" ] && [ "$(PROGRAM)" = oqmgr ] && command -v dpkg-divert >/dev/null \
	    && dpkg-divert --listpackage $(DAEMON_DIR)/oqmgr 2>/dev/null | grep -q LOCAL; then \
	  dpkg-divert --local --rename --divert $(DAEMON_DIR)/oqmgr.distrib --remove $(DAEMON_DIR)/oqmgr; \
	fi

clean:
	$(CARGO) clean
