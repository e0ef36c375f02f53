#!/usr/bin/env bash
# One command, one run, several nodes measured side by side on this
# machine (figures from a shared, noisy machine stay comparable as ratios).
#
#   bench/sidebyside.sh [NAME=BINARY ...] [ref=URL]
#
# Each NAME=BINARY is an agentos binary started as its own node (own
# AGENTOS_HOME, own ports, SQLite store, AGENTOS_PPROF=1) and measured with
# bench/runload (RUNLOAD_FLAGS, default below); ref=URL measures another
# server of this API already running (AGENTOS token in REF_TOKEN). Without
# arguments it builds this checkout as "ours". PG=1 adds this checkout's
# binary on PostgreSQL (one replica; needs scripts/pg-test-cluster.sh).
# Every node is measured in turn, twice, in the order A B A B, so a burst of
# load from others hits both; the report prints each figure, its goal
# (issue 16) and the ratio to the first node, with the machine and the Go
# version. It also records each node's resident memory (orchestrator and
# model-policy, idle after start and after every run of both rounds:
# 2 × (admit + latency + e2e) runs, over 10,000 with the defaults) and runs
# bench/gateway once (model-policy with full governance vs the same fake
# backend called directly, 1 and 50 clients; GATEWAY_DURATION per phase).
set -euo pipefail
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/sidebyside.XXXX)
flags=${RUNLOAD_FLAGS:--clients 50 -admit 4000 -grow 0 -latency 200 -e2e 1000 -get 20000}
export AGENTOS_QUOTA_INVOKE_QPS=100000
go build -o "$work/runload" ./bench/runload
go build -o "$work/gateway" ./bench/gateway
targets=()
if [ $# -eq 0 ]; then
	go build -o "$work/agentos-ours" ./cmd/agentos
	set -- "ours=$work/agentos-ours"
fi
if [ "${PG:-}" = 1 ]; then
	go build -o "$work/agentos-ours-pg" ./cmd/agentos
	eval "$(scripts/pg-test-cluster.sh start)"
	set -- "$@" "ours-pg=$work/agentos-ours-pg"
fi
port=53100
started=()
# rss_mb HOME: the resident memory (MB) of a node's orchestrator and
# model-policy, "orchestrator/model-policy", each "RSS (anonymous)": the
# rest of RSS is the agentos binary's file pages, shared by every service
# of the node (one copy in memory, counted in each process's RSS).
rss_mb() {
	local out=()
	for svc in orchestrator model-policy; do
		out+=("$(awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} END {printf "%.0f (%.0f)", r/1024, a/1024}' "/proc/$(cat "$1/run/$svc.pid")/status")")
	done
	local IFS=/
	echo "${out[*]}"
}
stop_all() {
	for h in "${started[@]}"; do AGENTOS_HOME=$h "$h/bin" nuke --env-file "$h/.agentos.env" >/dev/null 2>&1 || true; done
	[ "${PG:-}" = 1 ] && scripts/pg-test-cluster.sh stop "$AGENTOS_TEST_POSTGRES_DIR" >/dev/null || true
}
trap stop_all EXIT
for t in "$@"; do
	name=${t%%=*} what=${t#*=}
	if [ "$name" = ref ]; then targets+=("ref|$what|${REF_TOKEN:-}"); continue; fi
	home=$work/$name
	mkdir -p "$home" && cp "$what" "$home/bin"
	env=(AGENTOS_HOME=$home AGENTOS_PPROF=1
		AGENTOS_ORCHESTRATOR_ADDR=127.0.0.1:$((port + 1)) AGENTOS_MODEL_POLICY_ADDR=127.0.0.1:$((port + 2))
		AGENTOS_FEDERATION_ADDR=127.0.0.1:$((port + 3)) AGENTOS_FEDERATION_PEER_ADDR=127.0.0.1:$((port + 4))
		AGENTOS_GATEWAY_ADDR=127.0.0.1:$port)
	if [ "$name" = ours-pg ]; then
		db=bench_$RANDOM
		psql "$AGENTOS_TEST_POSTGRES_URL" -qc "CREATE DATABASE $db" >/dev/null
		env+=(AGENTOS_POSTGRES_URL="${AGENTOS_TEST_POSTGRES_URL%/*}/$db")
	fi
	env "${env[@]}" "$home/bin" up --env-file "$home/.agentos.env" >"$home/up.log" 2>&1 || { cat "$home/up.log"; exit 1; }
	started+=("$home")
	token=$(jq -r .platform_admin.token "$home/credentials.json")
	sleep 2 # settle: the idle figure is after start-up's allocations
	rss_mb "$home" >"$work/$name.rss-idle"
	pids=$(for f in "$home"/run/orchestrator.pid "$home"/run/model-policy.pid; do printf -- '-pid %s ' "$(cat "$f")"; done)
	targets+=("$name|http://127.0.0.1:$((port + 1))|$token|$pids")
	port=$((port + 100))
done
for round in 1 2; do
	for t in "${targets[@]}"; do
		IFS='|' read -r name url token pids <<<"$t"
		echo "round $round: $name ($url)" >&2
		# shellcheck disable=SC2086
		"$work/runload" -url "$url" -token "$token" -out "$work/$name-$round" $pids $flags >/dev/null
	done
done
for t in "${targets[@]}"; do
	IFS='|' read -r name _ <<<"$t"
	[ "$name" = ref ] || rss_mb "$work/$name" >"$work/$name.rss-after"
done
echo "gateway: model-policy vs direct to the backend" >&2
"$work/gateway" -duration "${GATEWAY_DURATION:-5s}" -json "$work/gateway.json" >"$work/gateway.txt" 2>&1
{
	echo "# side by side ($(date -u +%FT%TZ))"
	echo
	echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- Go: $(go version | cut -d' ' -f3-)"
	echo "- runload flags: $flags"
	echo
	echo "| measure | goal | $(for t in "${targets[@]}"; do printf '%s (round 1, 2) | ' "${t%%|*}"; done)"
	echo "|---|---|$(for _ in "${targets[@]}"; do printf -- '---|'; done)"
	first=${targets[0]%%|*}
	for m in 'admission_first.per_second|run admission /s|≥ 5,000' 'admission_first.p99_ms|run admission p99 ms|< 50' \
		'create_to_first_event.p50_ms|create → first event p50 ms|< 1' 'create_to_terminal.p50_ms|create → terminal p50 ms|–' \
		'completed_runs.per_second|completed runs /s|≥ 1,000' 'completed_runs.server_cpu_us_per_op|server CPU µs per completed run (orchestrator + model-policy)|–' \
		'get_run.per_second|GET /v1/runs/{id} /s|≥ 2× a reference server' 'get_run.p99_ms|GET /v1/runs/{id} p99 ms|–' \
		'get_run.server_cpu_us_per_op|server CPU µs per GET (orchestrator + model-policy)|–'; do
		key=${m%%|*} rest=${m#*|}
		label=${rest%%|*} goal=${rest#*|}
		base=$(jq -n "([inputs.$key // 0]|add/length)" "$work/$first-1.json" "$work/$first-2.json")
		printf '| %s | %s | ' "$label" "$goal"
		for t in "${targets[@]}"; do
			n=${t%%|*}
			a=$(jq ".$key // 0" "$work/$n-1.json") b=$(jq ".$key // 0" "$work/$n-2.json")
			printf '%.2f, %.2f (×%.2f) | ' "$a" "$b" "$(jq -n "(($a+$b)/2)/$base")"
		done
		echo
	done
	printf '| RSS MB idle, orchestrator/model-policy, each "RSS (anonymous)" | ≤ 30 each | '
	for t in "${targets[@]}"; do n=${t%%|*}; printf '%s | ' "$(cat "$work/$n.rss-idle" 2>/dev/null || echo –)"; done
	echo
	printf '| RSS MB after both rounds, as above | ≤ 60 each after 10k runs | '
	for t in "${targets[@]}"; do n=${t%%|*}; printf '%s | ' "$(cat "$work/$n.rss-after" 2>/dev/null || echo –)"; done
	echo
	echo
	echo "Ratios: the mean of the two rounds over $first's mean."
	echo
	echo "## Model gateway (bench/gateway, this checkout, ${GATEWAY_DURATION:-5s} per phase)"
	echo
	echo "| measure | goal | figure |"
	echo "|---|---|---|"
	g=$work/gateway.json
	phase() { jq -r ".phases[] | select(.target==\"$1\" and .clients==$2) | .$3" "$g"; }
	printf '| throughput at 50 clients, gateway / direct | ≥ 45%% | %.1f%% (%.0f / %.0f req/s) |\n' \
		"$(jq '.throughput_ratio_at_max_clients*100' "$g")" "$(phase gateway 50 throughput_rps)" "$(phase direct 50 throughput_rps)"
	printf '| added p50 at 1 client | < 100 µs | %.0f µs |\n' "$(jq .added_p50_us_at_1_client "$g")"
	printf '| CPU µs per request at 50 clients (whole process: client, backend and, for the gateway, model-policy) | – | gateway %.0f, direct %.0f |\n' \
		"$(phase gateway 50 cpu_us_per_request)" "$(phase direct 50 cpu_us_per_request)"
} | tee "$work/report.md"
echo "report: $work/report.md" >&2
