#!/usr/bin/env bash
# Runs the benchmark scenarios of perf/scenarios.tsv: every peer (testpmd io,
# l3fwd LPM, dpgate, the kernel) on the same ports and core, interleaved,
# REPEATS times; writes perf/results/run-*.json and PNG plots, prints a table.
# Usage: perf/run.sh [--quick] [--repeats N] [--warmup S] [--window S]
#                    [--scenario NAME]... [--build DIR] [--dpgate BIN] [--out DIR] [--no-plots]
#   --quick       l3-64 only, 1 repeat, short window (the smoke run)
#   --scenario    run only these rows (also rows marked pending)
#   --build       meson build dir for dpgate, dpgate-gen and l3fwd (default build-perf; built here)
#   --dpgate      use this dpgate binary, do not build it (dpgate-gen still comes from --build)
# New-connection rows (gen options with --new-ratio 1): a replayed pcap is new
# only on its first pass, so dpgate is fed there by dpgate-gen over net_memif
# (perf/zero-loss.sh's setup, unpaced: a new tuple every packet for as long as
# the row measures); the kernel peer replays the row's pcap as elsewhere.
set -euo pipefail
usage() { sed -n '5,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
perf=$(cd "$(dirname "$0")" && pwd)
. "$perf/memif.sh"
root=$(dirname "$perf")
build=$root/build-perf
out=$perf/results
repeats=3 warmup=1 window=1.5 plots=1 quick=0 dpgate=
only=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 repeats=1 warmup=0.3 window=0.5 only=(l3-64) ;;
    --repeats) repeats=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --window) window=$2; shift ;;
    --scenario) only+=("$2"); shift ;;
    --build) build=$(mkdir -p "$2" && cd "$2" && pwd); shift ;;
    --dpgate) dpgate=$2; shift ;;
    --out) out=$2; shift ;;
    --no-plots) plots=0 ;;
    *) usage ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (DPDK runtime dir, namespaces)" >&2; exit 1; }

work=$(mktemp -d /tmp/dpgperf.XXXXXX)
tag=dpgperf$$
pid= gen_pid=
cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  if [ -n "$gen_pid" ]; then kill -9 "$gen_pid" 2>/dev/null || true; fi
  rm -rf "$work" /var/run/dpdk/"$tag"-*
}
trap cleanup EXIT INT TERM

if [ ! -f "$build/build.ninja" ]; then meson setup "$build" "$root" >/dev/null; fi
if [ -z "$dpgate" ]; then
  ninja -C "$build" dpgate dpgate-gen >/dev/null
  dpgate=$build/dpgate
else
  ninja -C "$build" dpgate-gen >/dev/null
fi
gen_bin=$build/dpgate-gen
l3fwd=$("$perf/build-l3fwd.sh" "$build/perf")
testpmd=$(command -v dpdk-testpmd)
eal_log="--log-level=lib.eal:warning --log-level=pmd.net.pcap:warning"
runs=0
rules_file=
# l3fwd's LPM routes: its defaults (198.18.N.0/24 -> port N) plus the kube
# service prefix gen-pcap.py --services sends to, out of port 1 as dpgate
# sends the DNATed packets, so the DNAT rows have an l3fwd figure.
sed 's/#.*//' /usr/share/dpdk/examples/l3fwd/lpm_default_v4.cfg >"$work/l3fwd-v4.cfg"
echo "R198.19.0.0/16 1" >>"$work/l3fwd-v4.cfg"
l3fwd_routes=(--rule_ipv4="$work/l3fwd-v4.cfg" --rule_ipv6=/usr/share/dpdk/examples/l3fwd/lpm_default_v6.cfg)

# stop_peer: SIGTERM, then SIGKILL after 5 s; removes its DPDK runtime dir.
stop_peer() {
  local i
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}

# lcores W: main lcore on CPU 0, forwarding lcores 1.. on CPU 1, then CPU 0.
lcores() { if [ "$1" -eq 1 ]; then echo "0@0,1@1"; else echo "0@0,1@1,2@0"; fi; }

# pcap_vdev PCAP W: net_pcap source, one RX queue (a replay of PCAP) per worker.
pcap_vdev() {
  local v="net_pcap0" i
  for i in $(seq 1 "$2"); do v+=",rx_pcap=$1"; done
  echo "$v,infinite_rx=1"
}

# start_peer PEER PCAP W PACKETS LOG: starts one DPDK peer; sets pid, prefix, threads.
start_peer() {
  local peer=$1 pcap=$2 w=$3 packets=$4 log=$5
  runs=$((runs + 1))
  prefix=$tag-$runs
  # net_pcap's infinite_rx holds every frame in an mbuf (~2.2 KB each):
  # memory grows with the file (1 M frames: ~5.3 GB, without hugepages).
  local mbufs=$(( (w * packets + 16384) ))
  local mem=$(( 1024 + mbufs * 4 / 1000 ))
  local eal=(--no-huge --no-pci -m "$mem" --file-prefix "$prefix" $eal_log)
  case $peer in
    testpmd)
      threads=rte-worker-1,lcore-worker-1
      [ "$w" -eq 2 ] && threads+=",rte-worker-2,lcore-worker-2"
      "$testpmd" "${eal[@]}" --lcores "$(lcores "$w")" --vdev "$(pcap_vdev "$pcap" "$w")" \
        --vdev net_null0,no-rx=1 -- --forward-mode=io --nb-cores="$w" --rxq="$w" --txq="$w" \
        --total-num-mbufs="$mbufs" --stats-period 3600 </dev/null >"$log" 2>&1 &
      ;;
    l3fwd)
      # One lcore: the main lcore forwards (l3fwd wants a TX queue per lcore).
      if [ "$w" -eq 1 ]; then
        threads=main
        L3FWD_MIN_MBUF=$mbufs "$l3fwd" "${eal[@]}" -l 1 --vdev "$(pcap_vdev "$pcap" 1)" --vdev net_null0,no-rx=1 \
          -- -p 0x3 --config="(0,0,1),(1,0,1)" --parse-ptype "${l3fwd_routes[@]}" >"$log" 2>&1 &
      else
        threads=main,rte-worker-1,lcore-worker-1
        L3FWD_MIN_MBUF=$mbufs "$l3fwd" "${eal[@]}" --lcores 0@0,1@1 --vdev "$(pcap_vdev "$pcap" 2)" --vdev net_null0,no-rx=1 \
          -- -p 0x3 --config="(0,0,1),(0,1,0),(1,0,1),(1,1,0)" --parse-ptype "${l3fwd_routes[@]}" >"$log" 2>&1 &
      fi
      ;;
    dpgate|dpgate-memif)
      threads=rte-worker-1,lcore-worker-1
      [ "$w" -eq 2 ] && threads+=",rte-worker-2,lcore-worker-2"
      local pool=$(( w * packets + 2 * w * (1024 + 1024 + 32) + 4096 )) rules_line=
      # room for every flow of the file (the default is 1 M), with slack
      local max_flows=$(( packets + packets / 4 > 1048576 ? packets + packets / 4 : 1048576 ))
      local lan="$(pcap_vdev "$pcap" "$w")" wan="net_null0,no-rx=1"
      if [ "$peer" = dpgate-memif ]; then
        # Fed by dpgate-gen (start_gen): memif server ports, as zero-loss.sh
        # gives them. Every connection the row makes stays (SYN_SENT, 120 s,
        # as in the kernel peer): 16 M flows hold ~7 s of the fastest rate
        # seen here (2.1 M/s), so no early drop or expiry runs in the window.
        lan=$(memif_server 0 "$work" 14) wan=$(memif_server 1 "$work" 14)
        pool=16383 max_flows=16777216
        rm -f "$work"/*.sock
      fi
      [ -z "$rules_file" ] || rules_line="rules = \"$rules_file\";"
      cat >"$work/dpgate.conf" <<CONF
workers = $w;
idle_sleep_us = 0;
mbuf_pool_size = $pool;
ports = (
  { name = "lan"; device = "$lan"; addresses = [ "198.18.0.1/24" ]; },
  { name = "wan"; device = "$wan"; addresses = [ "198.18.101.1/24" ]; }
);
routes = ( { prefix = "198.18.1.0/24"; gateway = "198.18.101.2"; port = "wan"; } );
neighbours = ( { address = "198.18.101.2"; mac = "02:00:00:00:01:02"; port = "wan"; } );
$rules_line
conntrack = { max_flows = $max_flows; };
CONF
      "$dpgate" "${eal[@]}" --lcores "$(lcores "$w")" -- -c "$work/dpgate.conf" >"$log" 2>&1 &
      ;;
    *) echo "run.sh: unknown peer $peer" >&2; return 1 ;;
  esac
  pid=$!
}

# start_gen GEN_OPTS LOG SECONDS: dpgate-gen on CPU 0 (beside dpgate's sleeping
# control thread), the client of a dpgate-memif peer's ports, sending the
# row's traffic unpaced (the DUT's full ring holds it back) for SECONDS, then
# idle and connected (--hold) until dpgate stops; sets gen_pid. GEN_OPTS are
# the row's gen-pcap.py options less --packets, which dpgate-gen takes by the
# same names.
start_gen() {
  local opts=() skip=0 o i
  for o in $1; do
    if [ $skip -eq 1 ]; then skip=0; continue; fi
    case $o in --packets) skip=1 ;; *) opts+=("$o") ;; esac
  done
  wait_running "$2.dut" "$pid" || true  # a dpgate that did not start fails the row's checks
  memif_client_args "$work" 14
  "$gen_bin" --no-huge --no-pci -m 256 --file-prefix "$prefix-gen" $eal_log --log-level=pmd.net.memif:warning \
    --lcores 0@0 "${memif_client[@]}" -- "${memif_aim[@]}" "${opts[@]}" --learn-rate 0 \
    --duration "$3" --hold >"$2" 2>&1 &
  gen_pid=$!
}

# stop_gen: after stop_peer (a memif client must not leave under dpgate's
# polling worker), the generator leaves as its links go down; SIGINT, then
# SIGKILL after 5 s, if it has not.
stop_gen() {
  local i
  [ -n "$gen_pid" ] || return 0
  for i in $(seq 1 30); do kill -0 "$gen_pid" 2>/dev/null || break; sleep 0.1; done
  kill -INT "$gen_pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$gen_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$gen_pid" 2>/dev/null || true
  wait "$gen_pid" 2>/dev/null || true
  gen_pid=
  rm -rf /var/run/dpdk/"$prefix"-gen
}

# The pcap PMD names its ports' MACs itself: learn the ingress MAC dpgate sees.
python3 "$perf/gen-pcap.py" "$work/probe.pcap" --flows 1 2>/dev/null
start_peer dpgate "$work/probe.pcap" 1 1 "$work/probe.log"
for i in $(seq 1 100); do grep -q "dpgate: running" "$work/probe.log" && break; sleep 0.1; done
lan_mac=$(sed -n 's/^dpgate: port lan: .* mac \([0-9a-f:]*\),.*/\1/p' "$work/probe.log")
stop_peer
[ -n "$lan_mac" ] || { echo "run.sh: dpgate did not start:" >&2; cat "$work/probe.log" >&2; exit 1; }

# TSC frequency, as the EAL measures it, for cycles per packet.
"$testpmd" --no-huge --no-pci -m 256 --file-prefix "$tag-tsc" --log-level=lib.eal:debug -l 0 \
  --vdev net_null0 -- --help >"$work/tsc.log" 2>&1 || true
tsc_khz=$(sed -n 's/.*TSC frequency is ~\([0-9]*\) KHz.*/\1/p' "$work/tsc.log" | head -1)
[ -n "$tsc_khz" ] || { echo "run.sh: cannot read the TSC frequency from the EAL" >&2; exit 1; }

samples=$work/samples.jsonl
: >"$samples"
skipped=()

# The selected rows, in file order: r_name[i] and so on.
r_name=() r_status=() r_axis=() r_w=() r_peers=() r_gen=() r_rules=() r_group=()
while IFS=$'\t' read -r -u 3 name status axis w peers gen rules group; do
  case $name in ''|'#'*|name) continue ;; esac
  selected=0
  for s in "${only[@]}"; do [ "$s" = "$name" ] && selected=1; done
  if [ ${#only[@]} -gt 0 ] && [ $selected -eq 0 ]; then continue; fi
  if [ "${status%%:*}" != run ] && [ $selected -eq 0 ]; then
    skipped+=("$name: ${status#*:}")
    continue
  fi
  if [ "${status%%:*}" = pending ]; then
    # A pending row runs its peers but not dpgate, which lacks the feature.
    peers=$(echo "$peers" | tr , '\n' | grep -v '^dpgate$' | paste -sd, -)
    skipped+=("$name (dpgate only; the other peers ran): ${status#pending:}")
  fi
  r_name+=("$name") r_status+=("$status") r_axis+=("$axis") r_w+=("$w") r_peers+=("$peers")
  r_gen+=("$gen") r_rules+=("$rules") r_group+=("${group:--}")
done 3<"$perf/scenarios.tsv"

# prepare_row I: row I's rules file, pcap and timings (r_rules_file[I] ...).
r_rules_file=() r_pcap=() r_packets=() r_new_conn=() r_warmup=() r_timeout=()
prepare_row() {
  local i=$1 name=${r_name[$1]} gen=${r_gen[$1]} rules=${r_rules[$1]} packets new_conn=0
  r_rules_file[i]=
  if [ "$rules" != - ]; then
    r_rules_file[i]=$work/$name.rules
    # shellcheck disable=SC2086
    python3 "$perf/gen-rules.py" "${r_rules_file[i]}" $rules
  fi
  case " $gen " in *" --new-ratio 1 "*) new_conn=1 ;; esac
  r_new_conn[i]=$new_conn
  r_pcap[i]=$work/$name.pcap
  # shellcheck disable=SC2086
  packets=$(python3 "$perf/gen-pcap.py" "${r_pcap[i]}" $gen --dst-mac "$lan_mac" 2>&1 | sed -n 's/^gen-pcap: .*: \([0-9]*\) frames.*/\1/p')
  [ -n "$packets" ] || { echo "run.sh: $name: gen-pcap.py $gen failed" >&2; exit 1; }
  r_packets[i]=$packets
  # The warm-up covers a first replay of the whole file at 0.3 Mpps, so that
  # a stateful peer measures established flows, not their creation (1 M flows:
  # 3.5 s); a new-connection row measures their creation, from the start.
  r_warmup[i]=$(awk -v w="$warmup" -v p="$packets" -v n=$new_conn 'BEGIN { x = n ? 0 : p / 300000; print (x > w ? x : w) }')
  # net_pcap reads the whole file into mbufs before the port starts (2 M frames: ~30 s).
  r_timeout[i]=$(( 20 + packets / 50000 ))
}

# sample I PEER REP: one measurement of PEER on row I, appended to $samples.
sample() {
  local i=$1 peer=$2 rep=$3 name=${r_name[$1]} axis=${r_axis[$1]} w=${r_w[$1]} gen=${r_gen[$1]}
  local pcap=${r_pcap[$1]} packets=${r_packets[$1]} row_warmup=${r_warmup[$1]} row_timeout=${r_timeout[$1]}
  local log=$work/$name-$peer-$rep.log m gen_result ct
  rules_file=${r_rules_file[$1]}
  if [ "$peer" = kernel ]; then
    m=$("$perf/kernel-peer.sh" "$pcap" ${rules_file:+--rules "$rules_file"} --frames "$packets" --warmup "$row_warmup" \
          --window "$window" --tsc-hz "${tsc_khz}000" 2>"$work/measure.err") || m=
  elif [ "$peer" = dpgate ] && [ "${r_new_conn[$1]}" -eq 1 ]; then
    # The generator's trial outlasts the window (which starts with its
    # first packets) by a second.
    start_peer dpgate-memif - "$w" 0 "$log.dut"
    start_gen "$gen" "$log" "$(awk -v a="$warmup" -v b="$window" 'BEGIN { print a + b + 1 }')"
    m=$(python3 "$perf/measure.py" --pid "$pid" --prefix "$prefix" --threads "$threads" \
          --warmup "$warmup" --window "$window" --tsc-hz "${tsc_khz}000" --timeout 60 \
          2>"$work/measure.err") || m=
    for _ in $(seq 1 50); do grep -q '"kind":"result"' "$log" && break; sleep 0.1; done
    stop_peer
    stop_gen
    rm -rf /var/run/dpdk/"$prefix"
    # dpgate set the rate (its ring pushed the generator back), and every
    # packet was a connection it made and kept.
    gen_result=$(grep '"kind":"result"' "$log" | tail -1)
    ct=$(sed -n 's/^  conntrack: //p' "$log.dut" | head -1)
    if [ -z "$gen_result" ] || [[ $gen_result != *'"generator_limited":false'* ]]; then
      m=; echo "dpgate-gen did not finish its trial, or dpgate kept up with it: ${gen_result:-no result}" >"$work/measure.err"
    elif [[ $ct != *" early_dropped 0 refused 0 "* ]]; then
      m=; echo "conntrack dropped or refused flows: $ct" >"$work/measure.err"
    elif [ -n "$m" ]; then
      m="${m%\}}, \"gen_pushback\": $(echo "$gen_result" | sed 's/.*"pushback":\([0-9.]*\).*/\1/')}"
    fi
  else
    start_peer "$peer" "$pcap" "$w" "$packets" "$log"
    m=$(python3 "$perf/measure.py" --pid "$pid" --prefix "$prefix" --threads "$threads" \
          --warmup "$row_warmup" --window "$window" --tsc-hz "${tsc_khz}000" --timeout "$row_timeout" \
          2>"$work/measure.err") || m=
    stop_peer
    rm -rf /var/run/dpdk/"$prefix"
  fi
  if [ -n "$m" ]; then
    printf '{"scenario":"%s","axis":"%s","workers":%s,"peer":"%s","repeat":%s,"sample":%s}\n' \
      "$name" "$axis" "$w" "$peer" "$rep" "$m" >>"$samples"
    echo "run.sh: $name $peer #$rep: $m" >&2
  else
    echo "run.sh: $name $peer #$rep: FAILED: $(cat "$work/measure.err")" >&2
    for f in "$log" "$log.dut"; do [ -f "$f" ] && tail -5 "$f" >&2; done
    printf '{"scenario":"%s","axis":"%s","workers":%s,"peer":"%s","repeat":%s,"error":"%s"}\n' \
      "$name" "$axis" "$w" "$peer" "$rep" "$(tr -d '"\\\n\r\t' <"$work/measure.err" | head -c 200)" >>"$samples"
  fi
}

# Rows run one after another, each repeat running every peer in turn. A run
# of adjacent rows sharing a group (scenarios.tsv) runs interleaved: repeat
# by repeat, peer by peer, the rows' samples of one peer back to back, the
# rows' order reversed every other repeat. A ratio between two such rows
# (the new-connection target: 10 000 over 10 services) then pairs samples
# taken seconds apart, not minutes, on a host whose speed drifts.
row=0
while [ $row -lt ${#r_name[@]} ]; do
  members=("$row")
  while [ "${r_group[row]}" != - ] && [ $((row + ${#members[@]})) -lt ${#r_name[@]} ] &&
        [ "${r_group[row + ${#members[@]}]}" = "${r_group[row]}" ]; do
    members+=("$((row + ${#members[@]}))")
  done
  row_start=$SECONDS
  for k in "${members[@]}"; do prepare_row "$k"; done
  for rep in $(seq 1 "$repeats"); do
    order=("${members[@]}")
    if [ $((rep % 2)) -eq 0 ] && [ ${#members[@]} -gt 1 ]; then
      order=(); for ((k = ${#members[@]} - 1; k >= 0; k--)); do order+=("${members[k]}"); done
    fi
    # Peers in the first row's order, then any only later rows have.
    all_peers=$(for k in "${members[@]}"; do echo "${r_peers[k]//,/ }"; done | tr ' ' '\n' | awk 'NF && !seen[$0]++')
    for peer in $all_peers; do
      for k in "${order[@]}"; do
        case ",${r_peers[k]}," in *",$peer,"*) sample "$k" "$peer" "$rep" ;; esac
      done
    done
  done
  names=
  for k in "${members[@]}"; do rm -f "${r_pcap[k]}"; names+="${names:+ + }${r_name[k]}"; done
  echo "run.sh: $names: $((SECONDS - row_start)) s" >&2
  row=$((row + ${#members[@]}))
done

mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
result=$out/run-$stamp.json
plot_args=()
[ $plots -eq 1 ] && plot_args=(--plots "$out/run-$stamp")
printf '%s\n' "${skipped[@]}" >"$work/skipped.txt"
python3 "$perf/report.py" "$samples" --out "$result" --tsc-hz "${tsc_khz}000" --repeats "$repeats" \
  --warmup "$warmup" --window "$window" --skipped "$work/skipped.txt" \
  --commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" "${plot_args[@]}"
[ $quick -eq 1 ] || echo "run.sh: results in $result ($SECONDS s)"
