#!/usr/bin/env bash
# tests/compat/run.sh — run real etcd client libraries' own test suites (clientsuites/) against a
# fresh local 3-member raftkv cluster, and compare the failing tests with known-failures.txt.
#
# Exit 0 only when the failing tests are exactly the ones listed in known-failures.txt:
#  - a test that fails and is not listed fails the run (a regression, or a new flaky test);
#  - a listed test that now passes fails the run too ("now passes; remove it from
#    known-failures.txt"), so the list only ever shrinks;
#  - a suite that did not run to the end (install error, timeout, crash) fails the run;
#  - a test listed as "flaky: <suite> <test>" may pass or fail; its outcome is only printed.
#
# Env:
#   RAFTKV_BIN=path        use this raftkv binary instead of building target/release/raftkv
#   COMPAT_BASE_PORT=P     playground ports P..P+21 (default: the first free of 42000, 42100, ...)
#   COMPAT_TIMEOUT=S       hard limit for all suites together, install included (default 1800)
#   COMPAT_RESULTS=DIR     where the suites' logs and failing-test lists go (default: a new temp dir)
#   CS_ROOT=DIR            where the suites install python-etcd3's venv and build the etcd-client
#                          crate (default $TMPDIR/clientsuites; reused by later runs)
#   SUITES="py-etcd3"      run a subset (the comparison then covers only those suites)
# Needs: cargo, python3 with venv, protoc, etcdctl 3.4, network access to PyPI and crates.io.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/compat"
KNOWN="$HERE/known-failures.txt"
export SUITES="${SUITES:-py-etcd3 rust-etcd-client}"
# Total tests per suite (passed + failed + skipped) when it runs to the end; fewer means the
# suite stopped part way. py-etcd3: 96 upstream tests, 3 deselected by clientsuites/py-etcd3.sh
# (some are parametrized); rust-etcd-client: tests/client.rs + tests/namespace.rs of 0.21.1.
declare -A EXPECTED_TOTAL=([py-etcd3]=89 [rust-etcd-client]=29)

log() { echo "compat: $*"; }

# --- the server binary
if [ -n "${RAFTKV_BIN:-}" ]; then
  BIN="$RAFTKV_BIN"
else
  log "building raftkv (cargo build --release --bin raftkv)"
  (cd "$ROOT" && cargo build --release -q --bin raftkv)
  target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
  case "$target_dir" in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
  BIN="$target_dir/release/raftkv"
fi
[ -x "$BIN" ] || { log "no raftkv binary at $BIN"; exit 1; }

# --- a fresh 3-member cluster: the playground with its own new data directory
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -n "${COMPAT_BASE_PORT:-}" ]; then
  BASE="$COMPAT_BASE_PORT"
else
  BASE=""
  for p in $(seq 42000 100 44900); do
    if port_free "$p" && port_free $((p + 1)) && port_free $((p + 10)) && port_free $((p + 11)) \
      && port_free $((p + 20)) && port_free $((p + 21)); then
      BASE="$p"
      break
    fi
  done
  [ -n "$BASE" ] || { log "no free ports for the playground"; exit 1; }
fi
EP="127.0.0.1:$BASE"
ENDPOINTS="127.0.0.1:$BASE,127.0.0.1:$((BASE + 10)),127.0.0.1:$((BASE + 20))"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/raftkv-compat.XXXXXX")"
DATA="$WORK/data"
RESULTS="${COMPAT_RESULTS:-$WORK/results}"
mkdir -p "$RESULTS"
PLAYGROUND_LOG="$WORK/playground.log"
PLAYGROUND_PID=""
MEMBER_PIDS=""
SUITES_PID=""

stop_cluster() {
  local rc=$? i
  trap - EXIT INT TERM
  if [ -n "$SUITES_PID" ] && kill -0 "$SUITES_PID" 2>/dev/null; then
    log "stopping the suites"
    kill -TERM "$SUITES_PID" 2>/dev/null || true  # timeout passes it on to the suites
    wait "$SUITES_PID" 2>/dev/null || true
  fi
  if [ -n "$PLAYGROUND_PID" ] && kill -0 "$PLAYGROUND_PID" 2>/dev/null; then
    log "stopping the cluster"
    kill -INT "$PLAYGROUND_PID" 2>/dev/null || true
    for i in $(seq 1 80); do
      kill -0 "$PLAYGROUND_PID" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$PLAYGROUND_PID" 2>/dev/null; then
      log "the playground did not stop within 40 s; killing it and its members"
      kill -KILL "$PLAYGROUND_PID" 2>/dev/null || true
    fi
    wait "$PLAYGROUND_PID" 2>/dev/null || true
    sed -n '/stopping the members/,$p' "$PLAYGROUND_LOG" | grep -v 'data kept in' || true
  fi
  # members the playground could not stop (it was killed) must not outlive the run
  for i in $MEMBER_PIDS; do kill -KILL "$i" 2>/dev/null || true; done
  if [ "$rc" = 0 ]; then
    rm -rf "$WORK"
  else
    log "kept for a look: $WORK (the members' data and logs, the playground's log, results)"
  fi
  exit "$rc"
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting a fresh 3-member cluster (playground, client ports $BASE, $((BASE + 10)), $((BASE + 20)))"
"$BIN" playground --base-port "$BASE" --data-dir "$DATA" >"$PLAYGROUND_LOG" 2>&1 &
PLAYGROUND_PID=$!
ready=0
for _ in $(seq 1 120); do
  if grep -q etcdctl "$PLAYGROUND_LOG"; then ready=1; break; fi
  kill -0 "$PLAYGROUND_PID" 2>/dev/null || break
  sleep 0.5
done
if [ "$ready" != 1 ]; then
  log "the cluster did not start:"
  cat "$PLAYGROUND_LOG"
  for f in "$DATA"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  exit 1
fi
# the member processes (the playground's children), from /proc: no procps needed
for f in /proc/[0-9]*/stat; do
  { read -r pid _ _ ppid _ <"$f"; } 2>/dev/null || continue
  if [ "$ppid" = "$PLAYGROUND_PID" ]; then MEMBER_PIDS+="$pid "; fi
done
etcdctl --endpoints="$ENDPOINTS" endpoint health >/dev/null 2>&1 \
  || { log "the cluster is not healthy"; etcdctl --endpoints="$ENDPOINTS" endpoint health || true; exit 1; }

# make_member1_leader: the suites talk to member 1 only, and rust-etcd-client's test_move_leader
# passes only when its endpoint is the leader (it is written for a one-member etcd: it moves the
# leadership away from the member it talks to, which only the leader can do). Which member wins
# the first election is chance, so hand the leadership to member 1 before each suite.
member_status() {  # prints "<member 1's id> <leader id>" in hex (ids are 64-bit unsigned)
  etcdctl --endpoints="$EP" endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)[0]["Status"]
print("%x %x" % (s["header"]["member_id"], s["leader"]))'
}
make_member1_leader() {
  local ids me leader i
  for i in $(seq 1 20); do
    ids="$(member_status || true)"
    me="${ids% *}"
    leader="${ids#* }"
    if [ -n "$ids" ] && [ "$me" = "$leader" ]; then return 0; fi
    if [ -n "$ids" ] && [ "$leader" != 0 ]; then
      etcdctl --endpoints="$ENDPOINTS" move-leader "$me" >/dev/null 2>&1 || true
    fi
    sleep 0.5
  done
  log "WARNING: could not make member 1 the leader (status: ${ids:-none}); rust-etcd-client's test_move_leader will fail"
}

log "running the client suites against member 1 ($EP); results in $RESULTS"
start=$(date +%s)
deadline=$((start + ${COMPAT_TIMEOUT:-1800}))
suites_rc=0
for s in $SUITES; do
  left=$((deadline - $(date +%s)))
  if [ "$left" -le 0 ]; then log "out of time before suite $s"; suites_rc=124; break; fi
  make_member1_leader
  # in the background, so that a signal to this script is handled at once (the trap stops the
  # suites and the cluster) instead of after the suites end
  SUITES="$s" CS_RESULTS="$RESULTS" timeout -k 30 "$left" \
    "$HERE/clientsuites/run-all.sh" "$EP" > >(tee -a "$RESULTS/run-all.out") 2>&1 &
  SUITES_PID=$!
  set +e
  wait "$SUITES_PID"
  rc=$?
  set -e
  SUITES_PID=""
  [ "$rc" = 0 ] || suites_rc=$rc
done
log "client suites took $(($(date +%s) - start)) s (run-all exit $suites_rc)"

# --- compare with known-failures.txt
status=0
# the members must all still be up: a crash is a failure of its own (and explains many others)
for p in $MEMBER_PIDS; do
  if ! kill -0 "$p" 2>/dev/null; then
    log "FAIL: member process $p exited during the run (its log is in $DATA)"
    status=1
  fi
done
if [ "$suites_rc" = 124 ]; then
  log "FAIL: the suites ran out of time (COMPAT_TIMEOUT=${COMPAT_TIMEOUT:-1800} s)"
  status=1
elif [ "$suites_rc" != 0 ]; then
  log "FAIL: run-all.sh exited with $suites_rc"
  status=1
fi
finished=""  # the suites that ran to the end: only they are compared with the list
current="$RESULTS/failing.txt"
: >"$current"
echo "=== SUITE lines"
for s in $SUITES; do
  line="$(grep "^SUITE $s " "$RESULTS/$s.out" 2>/dev/null | tail -1 || true)"
  if [ -z "$line" ] || [ ! -f "$RESULTS/$s.failed" ]; then
    echo "SUITE $s did-not-finish"
    log "FAIL: suite $s did not finish (log: $RESULTS/$s.out, $RESULTS/$s.log)"
    status=1
    continue
  fi
  echo "$line"
  total=0
  for k in passed failed skipped; do
    n="$(sed -n "s/.* $k=\([0-9]*\).*/\1/p" <<<"$line")"
    total=$((total + ${n:-0}))
  done
  if [ -n "${EXPECTED_TOTAL[$s]:-}" ] && [ "$total" != "${EXPECTED_TOTAL[$s]}" ]; then
    log "FAIL: suite $s reported $total tests, expected ${EXPECTED_TOTAL[$s]} (it stopped part way?)"
    status=1
    continue
  fi
  finished+=" $s"
  sed "s/^/$s /" "$RESULTS/$s.failed" >>"$current"
done
sort -u -o "$current" "$current"

# the listed failures of the suites that ran, without comments and blank lines; a line
# "flaky: <suite> <test>" is a test that may fail or pass (its outcome is shown, not checked)
known="$RESULTS/known.txt"
flaky="$RESULTS/flaky.txt"
: >"$known"
: >"$flaky"
if [ -f "$KNOWN" ]; then
  listed="$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e 's/^[[:space:]]*//' -e '/^$/d' "$KNOWN")"
  for s in $finished; do
    grep "^$s " <<<"$listed" >>"$known" || true
    grep "^flaky:[[:space:]]*$s " <<<"$listed" | sed 's/^flaky:[[:space:]]*//' >>"$flaky" || true
  done
fi
sort -u -o "$known" "$known"
sort -u -o "$flaky" "$flaky"

new_failures="$(comm -23 "$current" "$known" | comm -23 - "$flaky")"
now_passing="$(comm -13 "$current" "$known")"
if [ -n "$new_failures" ]; then
  status=1
  echo "=== failing and not in tests/compat/known-failures.txt (a regression, or a flaky test):"
  sed 's/^/  /' <<<"$new_failures"
fi
if [ -n "$now_passing" ]; then
  status=1
  echo "=== listed in tests/compat/known-failures.txt but now passes; remove it from known-failures.txt:"
  while IFS= read -r t; do echo "  $t: now passes; remove it from known-failures.txt"; done <<<"$now_passing"
fi
if [ -s "$flaky" ]; then
  echo "=== listed as flaky in tests/compat/known-failures.txt (not checked):"
  while IFS= read -r t; do
    if grep -qxF "$t" "$current"; then echo "  $t: failed this run"; else echo "  $t: passed this run"; fi
  done <"$flaky"
fi
echo "=== $(wc -l <"$current") failing, $(wc -l <"$known") listed as known failures, $(wc -l <"$flaky") as flaky; the full failing list: $current"
if [ "$status" = 0 ]; then
  log "OK: the failing tests are exactly the known failures"
else
  log "FAILED (logs: $RESULTS)"
fi
exit "$status"
