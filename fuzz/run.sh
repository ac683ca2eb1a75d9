#!/usr/bin/env bash
# `make fuzz`: coverage-guided fuzzing of every decoder that reads outside input, one target
# at a time, then a table: cases run, coverage, corpus, and what was found.
#
#   FUZZ_RUNS=1000000        cases per target (libFuzzer -runs)
#   FUZZ_TARGETS="a b"       targets to run (default: all, see fuzz/Cargo.toml)
#   FUZZ_SANITIZER=none      cargo-fuzz's -s: none (default: safe Rust, and RSS is ours alone) or address
#
# Installs what it needs (the nightly toolchain, cargo-fuzz) on a fresh machine. Seeds:
# fuzz/seeds/<target>/ (committed) and, built here, the queue files of tests/data/queue and
# the captured IPC bytes of tests/data/transcripts; libFuzzer grows fuzz/corpus/<target>/.
# Findings land in fuzz/artifacts/<target>/; the exit status is 1 if any target found one.

set -uo pipefail
cd "$(dirname "$0")"
FUZZ_DIR=$PWD
DATA=$FUZZ_DIR/../tests/data

RUNS=${FUZZ_RUNS:-1000000}
ALL_TARGETS="record envelope attr config trigger memory status queue_id"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
SANITIZER=${FUZZ_SANITIZER:-none}

die() { echo "fuzz: $*" >&2; exit 2; }

# --- tools -----------------------------------------------------------------------------------
command -v rustup >/dev/null || die "rustup not found: install a Rust toolchain with rustup"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal || die "cannot install nightly"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked || die "cannot install cargo-fuzz"
fi

for t in $TARGETS; do
  case " $ALL_TARGETS " in *" $t "*) ;; *) die "unknown target $t (targets: $ALL_TARGETS)" ;; esac
done

# --- seed corpora ----------------------------------------------------------------------------
# seed TARGET NAME CONTROL-BYTES FILE: one corpus entry, the control bytes the target
# expects in front of the file's bytes.
seed() {
  local dir=corpus/$1
  { printf "$3"; cat "$4"; } >"$dir/seed-$2"
}
queue_files() {
  for f in "$DATA"/queue/*; do
    case $f in *.postcat | *.records | *.md | *.maillog | *.txt) continue ;; esac
    echo "$f"
  done
}
for t in $TARGETS; do
  mkdir -p "corpus/$t" "artifacts/$t" logs
  if [ -d "seeds/$t" ]; then cp -f seeds/"$t"/* "corpus/$t/" 2>/dev/null; fi
  case $t in
    record)
      for f in $(queue_files); do
        seed record "$(basename "$f")-0" '\000' "$f"
        seed record "$(basename "$f")-16" '\005' "$f"
      done ;;
    envelope)
      # Caps 1 and 3 make batches; 0x10 = VERP filter, 0x20 = confirm_delay_cleared.
      for f in $(queue_files); do
        seed envelope "$(basename "$f")-cap1" '\001' "$f"
        seed envelope "$(basename "$f")-cap3" '\063' "$f"
        seed envelope "$(basename "$f")-cap0" '\040' "$f"
      done ;;
    attr)
      for f in "$DATA"/transcripts/*/*.bin; do
        name=$(basename "$(dirname "$f")")-$(basename "$f" .bin)
        seed attr "$name" '\000\007' "$f"
      done ;;
  esac
done

# --- build and run ---------------------------------------------------------------------------
# Debug assertions on: arithmetic overflow on outside input is a finding too.
BUILD_FLAGS=(--debug-assertions -s "$SANITIZER")
cargo +nightly fuzz build "${BUILD_FLAGS[@]}" || die "build failed"

stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
results=()
status=0
for t in $TARGETS; do
  echo "fuzz: $t: $RUNS runs"
  before=$(ls "corpus/$t" | wc -l)
  start=$(date +%s)
  touch "$stamp"
  # One process, one job: the machine is shared.
  cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$t" -- \
    -runs="$RUNS" -rss_limit_mb=512 -timeout=10 -print_final_stats=1 \
    >"logs/$t.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "logs/$t.log" | tail -1)
  if [ -z "$runs" ]; then
    runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "logs/$t.log" | tail -1)
  fi
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "logs/$t.log" | tail -1 | cut -d' ' -f2)
  after=$(ls "corpus/$t" | wc -l)
  found() { find "artifacts/$t" -maxdepth 1 -name "$1-*" -newer "$stamp" | wc -l; }
  crash=$(found crash) timeout=$(found timeout) oom=$(found oom) leak=$(found leak)
  peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "logs/$t.log" | tail -1)
  if [ "$rc" != 0 ] || [ $((crash + timeout + oom + leak)) != 0 ]; then
    status=1
    grep -m3 -E 'panicked at|==ERROR|ERROR: libFuzzer' "logs/$t.log" | sed "s/^/fuzz: $t: /"
  fi
  results+=("$(printf '%-9s %10s %7s %7s %9s %6s %6s %8s %4s %6s %7s' \
    "$t" "${runs:-0}" "${cov:--}" "${ft:--}" "$before->$after" "$crash" "$timeout" \
    "$oom" "$leak" "${peak:--}" "${secs}s")")
done

echo
printf '%-9s %10s %7s %7s %9s %6s %6s %8s %4s %6s %7s\n' \
  target runs cov ft corpus crash hang oom leak rss_mb time
for line in "${results[@]}"; do echo "$line"; done
echo "(logs: fuzz/logs/<target>.log; findings: fuzz/artifacts/<target>/)"
exit "$status"
