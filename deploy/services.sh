#!/usr/bin/env bash
# Start, stop and show the two long-running services of an s2_assets instance:
# dagster-webserver (the UI and GraphQL API) and dagster-daemon (schedules, sensors,
# backfills, the run queue). Both read $DAGSTER_HOME/dagster.yaml (SQLite or Postgres).
#
#   deploy/services.sh start    start both (if not running), wait until the UI answers
#   deploy/services.sh stop     stop both by pid: SIGINT, then SIGTERM, then SIGKILL
#   deploy/services.sh status   print each one's state; exit 0 only if both run
#
# Settings (environment):
#   DAGSTER_HOME          the instance folder (required)
#   S2_WEBSERVER_HOST     bind address, default 127.0.0.1 (set 0.0.0.0 deliberately)
#   S2_WEBSERVER_PORT     default 3000
#   S2_WORKSPACE          default <repo>/workspace.yaml
#   S2_VENV_BIN           where dagster's commands are, default <repo>/.venv/bin
#   S2_RUN_DIR            pid and log files, default $DAGSTER_HOME/services
#   S2_POOLS              pool limits set at start, default "download=4 sen2cor=1 raster=2";
#                         empty leaves the instance's limits alone
#   S2_START_TIMEOUT      seconds to wait for the UI, default 120
#   S2_STOP_TIMEOUT       seconds to wait after SIGINT (then after SIGTERM), default 30
#   DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS  default 1, and
#   DAGSTER_EVENT_BATCH_SIZE  default 1000: Dagster's lean bookkeeping for ranged runs (one
#                         "planned" event per asset and run, events written in batches),
#                         measured in docs/scale-out.md; set both to 0 to turn them off
# plus what the code location reads: S2_DATA_HOME, S2_ARCHIVE_ROOT, S2_DATE_START, ...
#
# Why a Python wrapper starts each service: a background job of a non-interactive shell
# inherits SIGINT (and sometimes SIGTERM) as *ignored*, a shell cannot un-ignore them, and a
# Python started that way never turns SIGINT into KeyboardInterrupt, so it would not stop.
# The wrapper resets both to their defaults, starts a new session (the service and the code
# servers it spawns form one process group, out of reach of the terminal's Ctrl-C) and execs
# the service under the same pid.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${DAGSTER_HOME:?set DAGSTER_HOME to the instance folder (its dagster.yaml configures it)}"
HOST=${S2_WEBSERVER_HOST:-127.0.0.1}
PORT=${S2_WEBSERVER_PORT:-3000}
WORKSPACE=${S2_WORKSPACE:-$REPO/workspace.yaml}
VENV_BIN=${S2_VENV_BIN:-$REPO/.venv/bin}
RUN_DIR=${S2_RUN_DIR:-$DAGSTER_HOME/services}
POOLS=${S2_POOLS-download=4 sen2cor=1 raster=2}
START_TIMEOUT=${S2_START_TIMEOUT:-120}
STOP_TIMEOUT=${S2_STOP_TIMEOUT:-30}
# Read by the daemon (which creates runs) and inherited by every run it launches.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=${DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS-1}
export DAGSTER_EVENT_BATCH_SIZE=${DAGSTER_EVENT_BATCH_SIZE-1000}
SERVICES=(webserver daemon)

RESET_AND_EXEC='
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
os.setsid()
os.execv(sys.argv[1], sys.argv[1:])
'

die() { echo "services.sh: $*" >&2; exit 1; }

program_of() {
    case $1 in
        webserver) echo dagster-webserver ;;
        daemon) echo dagster-daemon ;;
    esac
}

# The pid in the service's pid file if that process is alive and still that service (a pid
# file left by a crash may name a pid reused by something else: never signal that).
live_pid() {
    local file="$RUN_DIR/$1.pid" pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(program_of "$1")" || return 1
    echo "$pid"
}

# A background job's pid is that of a forked shell until it execs the service (on a loaded
# machine that can take a while): wait for the service's name in its command line, or its end.
await_exec() {  # name pid
    local deadline=$((SECONDS + START_TIMEOUT))
    until tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null | grep -q -- "$(program_of "$1")"; do
        kill -0 "$2" 2>/dev/null || return 0
        ((SECONDS < deadline)) || return 0
        sleep 0.1
    done
}

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

wait_gone() {  # pid seconds: 0 once the pid has exited
    local deadline=$((SECONDS + $2))
    while kill -0 "$1" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

wait_group_gone() {  # pgid seconds
    local deadline=$((SECONDS + $2))
    while group_alive "$1"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

set_pools() {
    [[ -n $POOLS ]] || return 0
    # One interpreter for all pools (each `dagster instance concurrency set` costs an import).
    # shellcheck disable=SC2086
    "$VENV_BIN/python" - $POOLS <<'PY'
import sys

import dagster as dg

pairs = [item.partition("=") for item in sys.argv[1:]]
bad = [f"{name}{eq}{limit}" for name, eq, limit in pairs if not (name and eq and limit.isdigit())]
if bad:
    sys.exit(f"S2_POOLS: {' '.join(bad)} is not name=limit (e.g. download=4 sen2cor=1)")
with dg.DagsterInstance.get() as instance:
    for name, _, limit in pairs:
        instance.event_log_storage.set_concurrency_slots(name, int(limit))
print("pools:", ", ".join(f"{name}={limit}" for name, _, limit in pairs))
PY
}

start_one() {
    local name=$1 pid
    if pid=$(live_pid "$name"); then
        echo "$name already running (pid $pid)"
        return 0
    fi
    local -a argv
    case $name in
        webserver) argv=("$VENV_BIN/dagster-webserver" -w "$WORKSPACE" -h "$HOST" -p "$PORT") ;;
        daemon) argv=("$VENV_BIN/dagster-daemon" run -w "$WORKSPACE") ;;
    esac
    "$VENV_BIN/python" -c "$RESET_AND_EXEC" "${argv[@]}" >>"$RUN_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
    await_exec "$name" $!
    echo "$name started (pid $!, log $RUN_DIR/$name.log)"
}

died_at_start() {  # name
    tail -n 30 "$RUN_DIR/$1.log" >&2
    die "$1 exited at start; log above ($RUN_DIR/$1.log)"
}

wait_for_webserver() {
    local pid deadline=$((SECONDS + START_TIMEOUT))
    # The pid just started is ours (no stale pid file to doubt): alive is enough.
    pid=$(<"$RUN_DIR/webserver.pid")
    kill -0 "$pid" 2>/dev/null || died_at_start webserver
    until "$VENV_BIN/python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "http://$HOST:$PORT/server_info" \
        2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || died_at_start webserver
        ((SECONDS < deadline)) || die "no answer from http://$HOST:$PORT after ${START_TIMEOUT}s"
        sleep 1
    done
    echo "UI: http://$HOST:$PORT"
}

start() {
    [[ -x $VENV_BIN/dagster-webserver ]] || die "no $VENV_BIN/dagster-webserver (set S2_VENV_BIN)"
    [[ -f $DAGSTER_HOME/dagster.yaml ]] ||
        echo "note: no $DAGSTER_HOME/dagster.yaml: Dagster's defaults (SQLite) apply" >&2
    mkdir -p "$RUN_DIR"
    set_pools
    for name in "${SERVICES[@]}"; do start_one "$name"; done
    wait_for_webserver
    sleep 1
    kill -0 "$(<"$RUN_DIR/daemon.pid")" 2>/dev/null || died_at_start daemon
}

stop_one() {
    local name=$1 pid
    if ! pid=$(live_pid "$name"); then
        echo "$name not running"
        rm -f "$RUN_DIR/$name.pid"
        return 0
    fi
    kill -INT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        echo "$name (pid $pid) still up ${STOP_TIMEOUT}s after SIGINT: SIGTERM" >&2
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
            echo "$name (pid $pid) ignored SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" 5 || die "$name (pid $pid) survived SIGKILL"
        fi
    fi
    # Code servers it spawned are in its process group (pgid = its pid); give them a moment
    # to follow their parent, then end them the same way.
    if ! wait_group_gone "$pid" 10; then
        echo "$name: processes left in group $pid: SIGTERM" >&2
        kill -TERM -- "-$pid" 2>/dev/null || true
        wait_group_gone "$pid" 10 || kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/$name.pid"
    echo "$name stopped (pid $pid)"
}

stop() {
    # The daemon first: it launches runs, and should not see the webserver disappear mid-way.
    stop_one daemon
    stop_one webserver
}

status() {
    local name pid up=0
    for name in "${SERVICES[@]}"; do
        if pid=$(live_pid "$name"); then
            echo "$name running (pid $pid)"
            up=$((up + 1))
        else
            echo "$name stopped"
        fi
    done
    ((up == ${#SERVICES[@]})) && echo "UI: http://$HOST:$PORT"
    ((up == ${#SERVICES[@]})) || return 3
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
