#!/usr/bin/env bash
# dd's Dagster deployment on a throwaway PostgreSQL (see README.md beside this file).
#   deployments/postgres/run.sh [start]   start PostgreSQL, dagster-webserver and dagster-daemon;
#                                         Ctrl-C stops all three
#   deployments/postgres/run.sh stop      stop a deployment started from another shell
# Relative paths are taken from the project root.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BIN="$ROOT/.venv/bin"
DEPLOY=$(realpath -m "${DD_DEPLOY_DIR:-.dd-postgres}")
WORKSPACE=$(realpath "${DD_WORKSPACE:-workspace.yaml}")
PORT=${PORT:-3000}
pg() { "$BIN/python" "$ROOT/deployments/postgres/pg.py" "$@"; }

# Stop one process group recorded in $DEPLOY/run/NAME.pid: SIGTERM, then SIGKILL after 10 s.
stop_group() {
    local file="$DEPLOY/run/$1.pid" pid
    [[ -f $file ]] || return 0
    pid=$(<"$file")
    if grep -qs dagster "/proc/$pid/cmdline"; then  # not a reused pid
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop_all() {
    stop_group webserver
    stop_group daemon
    pg stop "$DEPLOY/pgdata"
}

# Start a command in its own session (so its own process group, out of reach of the
# terminal's Ctrl-C) and record its pid, which is also its process group id.
launch() {
    local name=$1
    shift
    setsid "$@" >"$DEPLOY/logs/$name.log" 2>&1 &
    echo $! >"$DEPLOY/run/$name.pid"
}

if [[ ${1:-start} == stop ]]; then
    stop_all
    exit 0
fi
[[ ${1:-start} == start ]] || { echo "usage: $0 [start|stop]" >&2; exit 2; }

stop_all  # a deployment left over in the same folder
trap stop_all EXIT
trap 'exit 130' INT TERM
rm -rf "$DEPLOY/pgdata" "$DEPLOY/logs"
mkdir -p "$DEPLOY/run" "$DEPLOY/logs"
echo '*' >"$DEPLOY/.gitignore"

# Credentials live in this shell's environment only, and are inherited by the processes below.
# (A separate assignment, so that set -e sees pg.py fail: `eval "$(...)"` would hide it.)
exports=$(pg start "$DEPLOY/pgdata" ${DD_PG_PORT:+--port "$DD_PG_PORT"})
eval "$exports"
export DAGSTER_HOME
DAGSTER_HOME=$(pg dagster-home "$DEPLOY/dagster_home" \
    ${DD_LLM_ENDPOINT_RUN_LIMIT:+--llm-endpoint-limit "$DD_LLM_ENDPOINT_RUN_LIMIT"})
export DD_MAX_CONCURRENT_RUNS=${DD_MAX_CONCURRENT_RUNS:-4}  # dagster.yaml's `env:` has no default
export DAGSTER_DISABLE_TELEMETRY=1  # the services' upload thread ignores dagster.yaml's telemetry setting

launch webserver "$BIN/dagster-webserver" -h 127.0.0.1 -p "$PORT" -w "$WORKSPACE"
launch daemon "$BIN/dagster-daemon" run -w "$WORKSPACE"

URL="http://127.0.0.1:$PORT"
ui_up() {
    for _ in $(seq 120); do
        "$BIN/python" -c "import urllib.request; urllib.request.urlopen('$URL/server_info', timeout=2)" 2>/dev/null && return 0
        kill -0 "$(<"$DEPLOY/run/webserver.pid")" 2>/dev/null || break
        sleep 0.5
    done
    echo "dagster-webserver did not come up; the end of $DEPLOY/logs/webserver.log:" >&2
    tail -20 "$DEPLOY/logs/webserver.log" >&2
    return 1
}
ui_up
echo "Dagster UI: $URL  (PostgreSQL on $DD_PG_HOST:$DD_PG_PORT, logs in $DEPLOY/logs; Ctrl-C stops)"

# Run until Ctrl-C, `run.sh stop`, or either process exits.
wait -n || true
