# Shared helpers for the client-suite scripts (source it; do not run it).
#
# Every suite script takes one argument, ENDPOINT = host:port of a plaintext etcd v3 gRPC endpoint
# (an "http://" prefix is accepted and dropped), installs what it needs under $TMPDIR/clientsuites/ (default /tmp)
# (idempotent: a second run reuses it), runs the suite, and ends with exactly one line
#   SUITE <name> passed=N failed=M skipped=K
# The names of the failing tests go to $CS_RESULTS/<name>.failed (one per line),
# the raw log to $CS_RESULTS/<name>.log ($CS_RESULTS defaults to $CS_ROOT/results).
#
# WARNING: every suite wipes the whole keyspace (delete "" .. "\0" or "--prefix /"), creates users
# and roles, and turns auth on and off. Point it at a scratch cluster only.

CS_ROOT="${CS_ROOT:-${TMPDIR:-/tmp}/clientsuites}"
CS_RESULTS="${CS_RESULTS:-$CS_ROOT/results}"  # raftkv: overridable (tests/compat/run.sh uses a fresh one per run)
CS_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$CS_RESULTS"

# cs_endpoint ARG: sets EP_HOST, EP_PORT, EP (host:port) and EP_URL (http://host:port).
cs_endpoint() {
  local ep="${1:-}"
  if [ -z "$ep" ]; then
    echo "usage: $0 HOST:PORT   (a plaintext etcd v3 endpoint; the suite is destructive)" >&2
    exit 2
  fi
  ep="${ep#http://}"
  ep="${ep%/}"
  EP_HOST="${ep%:*}"
  EP_PORT="${ep##*:}"
  EP="$EP_HOST:$EP_PORT"
  EP_URL="http://$EP"
}

# cs_need_etcdctl: the Python suites seed and check data with etcdctl (v3 API) against ENDPOINT.
cs_need_etcdctl() {
  if ! command -v etcdctl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-client >/dev/null
    fi
  fi
  command -v etcdctl >/dev/null 2>&1 || { echo "etcdctl is required (apt-get install etcd-client)" >&2; exit 1; }
}

# cs_wait_endpoint: fail fast when nothing answers on ENDPOINT.
cs_wait_endpoint() {
  local i
  for i in $(seq 1 20); do
    if (exec 3<>"/dev/tcp/$EP_HOST/$EP_PORT") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "nothing listens on $EP" >&2
  exit 1
}

# cs_summarize_junit NAME FILE...: count JUnit/xUnit testcases (pytest --junitxml, mocha xunit),
# write the failing names to $CS_RESULTS/NAME.failed and print the SUITE line.
cs_summarize_junit() {
  local name="$1"; shift
  python3 - "$name" "$CS_RESULTS/$name.failed" "$@" <<'PY'
import sys, xml.etree.ElementTree as ET
name, failed_path, files = sys.argv[1], sys.argv[2], sys.argv[3:]
passed = failed = skipped = 0
failed_names = []
seen = {}
for f in files:
    try:
        root = ET.parse(f).getroot()
    except Exception as e:  # a missing or truncated report counts as one failure
        failed += 1
        failed_names.append(f"<no report {f}: {e}>")
        continue
    for tc in root.iter("testcase"):
        tid = (tc.get("classname") or "") + "::" + (tc.get("name") or "")
        kinds = {c.tag for c in tc}
        if "failure" in kinds or "error" in kinds:
            state = "failed"
        elif "skipped" in kinds:
            state = "skipped"
        else:
            state = "passed"
        # pytest may report one test twice (call + teardown error): the worst state wins
        prev = seen.get(tid)
        order = {"passed": 0, "skipped": 1, "failed": 2}
        if prev is None or order[state] > order[prev]:
            seen[tid] = state
for tid, state in seen.items():
    if state == "failed":
        failed += 1
        failed_names.append(tid)
    elif state == "skipped":
        skipped += 1
    else:
        passed += 1
with open(failed_path, "w") as fh:
    for n in sorted(failed_names):
        fh.write(n + "\n")
print(f"failing tests listed in {failed_path}")
print(f"SUITE {name} passed={passed} failed={failed} skipped={skipped}")
PY
}

# cs_etcdctl_wrapper DIR: DIR/etcdctl runs the real etcdctl with --endpoints=$EP_URL unless the
# caller already passes --endpoints (suites that call a bare `etcdctl` expect localhost:2379).
cs_etcdctl_wrapper() {
  local dir="$1" real
  real="$(command -v etcdctl)"
  mkdir -p "$dir"
  cat >"$dir/etcdctl" <<SH
#!/bin/sh
for a in "\$@"; do case "\$a" in --endpoints|--endpoints=*) exec "$real" "\$@";; esac; done
exec "$real" --endpoints="$EP_URL" "\$@"
SH
  chmod +x "$dir/etcdctl"
}

# cs_reset: put the server back to an empty keyspace with auth off and no users or roles, as the
# next suite expects. Tries the root passwords the suites use if a suite left auth on.
cs_reset() {
  local c="etcdctl --endpoints=$EP_URL" u r pw
  for pw in "" pwd rootpwd password; do
    if [ -z "$pw" ]; then
      $c user list >/dev/null 2>&1 && break
    elif $c --user "root:$pw" auth disable >/dev/null 2>&1; then
      break
    fi
  done
  for u in $($c user list 2>/dev/null); do $c user delete "$u" >/dev/null 2>&1 || true; done
  for r in $($c role list 2>/dev/null); do $c role delete "$r" >/dev/null 2>&1 || true; done
  $c del "" --from-key >/dev/null 2>&1 || true
}
