#!/usr/bin/env bash
# raftkv vs etcd, side by side, on this machine, with the same load generator.
#
# Starts a 3-member etcd (Debian's etcd-server, default durability: every acknowledged write
# fsynced on a majority) and a 3-member raftkv (same guarantee) on loopback, runs the same rows
# against each with `raftkv bench` (a closed-loop client over etcd's public v3 gRPC API), each
# row RUNS times, and prints the medians side by side with the ratio raftkv/etcd, the servers'
# CPU time per operation (user+system of all three members during the row, divided by the
# row's operations) and each system's peak RSS per member.
#
# Each row lists the system's current leader first. The load generator spreads its clients
# over the endpoints in order, so the one-client row measures the leader's path on both
# systems every time, instead of whichever member happened to win the first election (a
# follower adds the forwarding hop: about 0.1 ms on raftkv here).
#
# Usage: benches/vs-etcd.sh [--duration 10s] [--runs 3] [--out DIR]
#   needs: etcd 3.4 (apt-get install etcd-server), python3, a release build of raftkv
#   (built here if missing). Everything it starts is stopped on exit, also on error.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=10s
RUNS=3
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "usage: $0 [--duration 10s] [--runs 3] [--out DIR]" >&2; exit 2 ;;
  esac
done

command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }
cargo build --release -q -p server --bin raftkv
RAFTKV="$PWD/target/release/raftkv"

WORK="$(mktemp -d /tmp/raftkv-vs-etcd.XXXXXX)"
OUT="${OUT:-$WORK}"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK/etcd" "$WORK/raftkv" "$WORK/raftkv-lease"
}
trap cleanup EXIT INT TERM

ETCD_EP="127.0.0.1:42379,127.0.0.1:42381,127.0.0.1:42383"
RAFTKV_EP="127.0.0.1:52379,127.0.0.1:52381,127.0.0.1:52383"
ETCD_PIDS=()
RAFTKV_PIDS=()

start_etcd() {
  local cluster="e1=http://127.0.0.1:42380,e2=http://127.0.0.1:42382,e3=http://127.0.0.1:42384"
  for i in 1 2 3; do
    local client=$((42377 + 2 * i)) peer=$((42378 + 2 * i))
    etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$cluster" --initial-cluster-token vs-etcd --initial-cluster-state new \
      --log-level error >"$WORK/etcd-e$i.log" 2>&1 &
    PIDS+=($!); ETCD_PIDS+=($!)
  done
}

start_raftkv() {
  local cluster="r1=http://127.0.0.1:52380,r2=http://127.0.0.1:52382,r3=http://127.0.0.1:52384"
  local dirs="${1:-raftkv}"
  for i in 1 2 3; do
    local client=$((52377 + 2 * i)) peer=$((52378 + 2 * i))
    "$RAFTKV" serve --name "r$i" --data-dir "$WORK/$dirs/r$i" \
      --listen-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$cluster" --initial-cluster-token vs-etcd >"$WORK/raftkv-r$i.log" 2>&1 &
    PIDS+=($!); RAFTKV_PIDS+=($!)
  done
}

# Total user+system clock ticks of the given processes.
cpu_ticks() {
  local total=0
  for pid in "$@"; do
    local ticks
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ticks))
  done
  echo "$total"
}

peak_rss_mib() {
  local max=0
  for pid in "$@"; do
    local kib
    kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "$kib" -gt "$max" ] && max=$kib
  done
  echo $((max / 1024))
}

# The endpoints with the current leader's first (as given if no member says it leads).
leader_first() {
  local endpoints="$1" leader endpoint rest="" found=""
  leader=$("$RAFTKV" status --endpoints "$endpoints" 2>/dev/null \
    | awk -F', *' 'NR > 1 && $5 == "true" {print $1; exit}') || true
  IFS=, read -ra listed <<<"$endpoints"
  for endpoint in "${listed[@]}"; do
    if [ "$endpoint" = "$leader" ]; then found=1; else rest="$rest,$endpoint"; fi
  done
  if [ -n "$found" ]; then echo "$leader$rest"; else echo "$endpoints"; fi
}

wait_ready() {
  local endpoints="$1"
  for _ in $(seq 1 100); do
    if "$RAFTKV" put vs-etcd-ready 1 --endpoints "$endpoints" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "cluster at $endpoints did not become ready" >&2
  exit 1
}

echo "starting etcd $(etcd --version | head -1 | awk '{print $3}') and raftkv (3 members each) in $WORK"
start_etcd
start_raftkv
wait_ready "$ETCD_EP"
wait_ready "$RAFTKV_EP"

HZ=$(getconf CLK_TCK)
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
ROWS=("put 1" "put 16" "put 64" "put 256" "get 16" "get 64")
for row in "${ROWS[@]}"; do
  set -- $row
  workload=$1 clients=$2
  for system in etcd raftkv; do
    if [ "$system" = etcd ]; then ep=$ETCD_EP; pids=("${ETCD_PIDS[@]}"); else ep=$RAFTKV_EP; pids=("${RAFTKV_PIDS[@]}"); fi
    ep=$(leader_first "$ep")
    for run in $(seq 1 "$RUNS"); do
      before=$(cpu_ticks "${pids[@]}")
      line=$("$RAFTKV" bench --endpoints "$ep" --clients "$clients" --workload "$workload" \
        --duration "$DURATION" --json --seed "$run" 2>/dev/null)
      after=$(cpu_ticks "${pids[@]}")
      echo "$line" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
r.update(system='$system', run=$run, cpu_us_per_op=($after - $before) / $HZ * 1e6 / max(r['ops'], 1))
print(json.dumps(r))" >>"$RESULTS"
      echo "  $system $workload x$clients run $run: $(tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.0f ops/s p99 %.2f ms cpu %.0f us/op" % (r["ops_per_sec"], r["p99_ms"], r["cpu_us_per_op"]))')"
    done
  done
done

ETCD_RSS=$(peak_rss_mib "${ETCD_PIDS[@]}")
RAFTKV_RSS=$(peak_rss_mib "${RAFTKV_PIDS[@]}")

# Watch rows: first 10,000 idle watchers, whose cost is the members' resident memory while they
# are open minus just before, per watcher (measured first, before any watch load has grown the
# heaps); then 1,000 watchers on the benchmark's prefix while 64 clients put (events delivered
# per second, delivery latency from the put's acknowledgement, and the puts themselves).
rss_kib_total() {
  local total=0
  for pid in "$@"; do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
for system in etcd raftkv; do
  if [ "$system" = etcd ]; then ep=$ETCD_EP; pids=("${ETCD_PIDS[@]}"); else ep=$RAFTKV_EP; pids=("${RAFTKV_PIDS[@]}"); fi
  ep=$(leader_first "$ep")
  before=$(rss_kib_total "${pids[@]}")
  log="$WORK/idle-$system.log"
  "$RAFTKV" bench --endpoints "$ep" --clients 0 --workload watch --watchers 10000 \
    --watch-streams 100 --duration 6s >"$log" 2>&1 &
  idle=$!
  for _ in $(seq 1 300); do
    grep -q "are ready" "$log" && break
    kill -0 "$idle" 2>/dev/null || break
    sleep 0.1
  done
  sleep 2
  during=$(rss_kib_total "${pids[@]}")
  wait "$idle" || { echo "idle watchers on $system failed:"; cat "$log"; }
  echo "{\"system\":\"$system\",\"workload\":\"idle-watchers\",\"clients\":0,\"watchers\":10000,\"bytes_per_watcher\":$(( (during - before) * 1024 / 10000 ))}" >>"$RESULTS"
  echo "  $system 10000 idle watchers: $(( (during - before) * 1024 / 10000 )) bytes per watcher (resident memory of all members)"
  for run in $(seq 1 "$RUNS"); do
    line=$("$RAFTKV" bench --endpoints "$ep" --clients 64 --workload watch --watchers 1000 \
      --watch-streams 10 --duration "$DURATION" --json --seed "$run" 2>/dev/null)
    echo "$line" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
r.update(system='$system', run=$run)
print(json.dumps(r))" >>"$RESULTS"
    echo "  $system watch 1000 watchers x64 run $run: $(tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.0f puts/s, %.0f events/s, delivery p99 %.2f ms" % (r["ops_per_sec"], r["events_per_sec"], r["delivery_p99_ms"]))')"
  done
done

# Lease reads are an opt-in that etcd does not offer: measured on a fresh raftkv cluster
# started with --read-mode lease, and reported apart from the comparison.
for pid in "${RAFTKV_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${RAFTKV_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
RAFTKV_PIDS=()
export RAFTKV_READ_MODE=lease
start_raftkv raftkv-lease
unset RAFTKV_READ_MODE
wait_ready "$RAFTKV_EP"
for run in $(seq 1 "$RUNS"); do
  line=$("$RAFTKV" bench --endpoints "$RAFTKV_EP" --clients 64 --workload get \
    --duration "$DURATION" --json --seed "$run" 2>/dev/null)
  echo "$line" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
r.update(system='raftkv-lease', run=$run)
print(json.dumps(r))" >>"$RESULTS"
  echo "  raftkv --read-mode lease get x64 run $run: $(tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.0f ops/s p99 %.2f ms" % (r["ops_per_sec"], r["p99_ms"]))')"
done

python3 - "$RESULTS" "$ETCD_RSS" "$RAFTKV_RSS" "$OUT" <<'EOF'
import json, statistics, sys, platform, datetime, os
results, etcd_rss, raftkv_rss, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = {}
lease = []
watch = {}
idle = {}
for line in open(results):
    r = json.loads(line)
    if r["system"] == "raftkv-lease":
        lease.append(r)
        continue
    if r["workload"] == "watch":
        watch.setdefault(r["system"], []).append(r)
        continue
    if r["workload"] == "idle-watchers":
        idle[r["system"]] = r["bytes_per_watcher"]
        continue
    rows.setdefault((r["workload"], r["clients"]), {}).setdefault(r["system"], []).append(r)
def med(rs, key):
    return statistics.median(r[key] for r in rs)
cpu = os.cpu_count()
lines = []
lines.append(f"Machine: {platform.machine()}, {cpu} cores, {platform.system()} {platform.release()}; {datetime.date.today()}; median of {len(next(iter(rows.values()))['etcd'])} runs per row")
lines.append("")
lines.append("| row | etcd ops/s | raftkv ops/s | ratio | etcd p50 / p99 ms | raftkv p50 / p99 ms | etcd CPU µs/op | raftkv CPU µs/op |")
lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
chart = []
for (workload, clients), by in rows.items():
    e, k = by["etcd"], by["raftkv"]
    eo, ko = med(e, "ops_per_sec"), med(k, "ops_per_sec")
    name = f"{workload} x{clients}" + (" (linearizable)" if workload == "get" else "")
    lines.append(f"| {name} | {eo:,.0f} | {ko:,.0f} | {ko / eo:.2f}x | {med(e, 'p50_ms'):.2f} / {med(e, 'p99_ms'):.2f} | {med(k, 'p50_ms'):.2f} / {med(k, 'p99_ms'):.2f} | {med(e, 'cpu_us_per_op'):.0f} | {med(k, 'cpu_us_per_op'):.0f} |")
    chart.append((name, eo, ko))
lines.append(f"| peak RSS per member | {etcd_rss} MiB | {raftkv_rss} MiB | {raftkv_rss / max(etcd_rss, 1):.2f}x | | | | |")
if watch.get("etcd") and watch.get("raftkv"):
    e, k = watch["etcd"], watch["raftkv"]
    lines.append("")
    lines.append("| watch row | etcd | raftkv | ratio |")
    lines.append("|---|---:|---:|---:|")
    eo, ko = med(e, "events_per_sec"), med(k, "events_per_sec")
    lines.append(f"| events delivered/s, 1,000 watchers on one prefix, 64 putting clients | {eo:,.0f} | {ko:,.0f} | {ko / max(eo, 1):.2f}x |")
    ed, kd = med(e, "delivery_p99_ms"), med(k, "delivery_p99_ms")
    lines.append(f"| delivery latency p50 / p99 ms (put acknowledged to event received) | {med(e, 'delivery_p50_ms'):.2f} / {ed:.2f} | {med(k, 'delivery_p50_ms'):.2f} / {kd:.2f} | {kd / max(ed, 1e-9):.2f}x (p99) |")
    ep_, kp = med(e, "ops_per_sec"), med(k, "ops_per_sec")
    lines.append(f"| puts/s with those 1,000 watchers | {ep_:,.0f} | {kp:,.0f} | {kp / max(ep_, 1):.2f}x |")
    plain = rows.get(("put", 64), {})
    if plain.get("raftkv") and plain.get("etcd"):
        lines.append(f"| same, as a share of the put x64 row | {ep_ / med(plain['etcd'], 'ops_per_sec'):.2f} | {kp / med(plain['raftkv'], 'ops_per_sec'):.2f} | |")
    if "etcd" in idle and "raftkv" in idle:
        lines.append(f"| resident memory per idle watcher (10,000 watchers, all members) | {idle['etcd']:,} B | {idle['raftkv']:,} B | {idle['raftkv'] / max(idle['etcd'], 1):.2f}x |")
if lease:
    lines.append("")
    lines.append(f"Opt-in, not compared with etcd (which has no such mode): raftkv `--read-mode lease`, linearizable get x64 on a fresh cluster: {med(lease, 'ops_per_sec'):,.0f} ops/s, p50 / p99 {med(lease, 'p50_ms'):.2f} / {med(lease, 'p99_ms'):.2f} ms.")
table = "\n".join(lines)
print()
print(table)
open(os.path.join(out, "table.md"), "w").write(table + "\n")
# A bar chart as plain SVG (no plotting library needed): ops/s per row, etcd vs raftkv.
width, bar, gap, left = 760, 14, 18, 170
height = 40 + len(chart) * (2 * bar + gap)
peak = max(max(e, k) for _, e, k in chart) or 1
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
       '<text x="10" y="18" font-weight="bold">ops/s (median), 3 members on one 2-core machine: etcd 3.4 (grey) vs raftkv (blue)</text>']
y = 34
for name, e, k in chart:
    for value, colour in ((e, "#999"), (k, "#2a6fdb")):
        w = (width - left - 90) * value / peak
        svg.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{colour}"/>')
        svg.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 4}">{value:,.0f}</text>')
        y += bar
    svg.append(f'<text x="10" y="{y - bar + 2}">{name}</text>')
    y += gap
svg.append("</svg>")
open(os.path.join(out, "chart.svg"), "w").write("\n".join(svg) + "\n")
print(f"\n(table.md and chart.svg written to {out})")
EOF
