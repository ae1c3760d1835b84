#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, single node) from Maven Central jars: no Docker needed.
#
#   kafka-local.sh fetch                     download the broker jars once into .cache/kafka
#   kafka-local.sh start DATA_DIR PORT       format DATA_DIR on first use, start on 127.0.0.1:PORT,
#                                            return once the broker answers (controller: PORT+1)
#       [--config FILE]                      properties appended to server.properties (same @...@
#                                            placeholders; a later key wins), e.g. a SASL listener
#                                            and an authorizer: see sasl-acls.properties
#       [--add-scram SPEC]...                a SCRAM credential written when DATA_DIR is formatted
#                                            (kafka-storage format --add-scram), e.g.
#                                            'SCRAM-SHA-512=[name=admin,password=...]'
#   kafka-local.sh stop DATA_DIR             stop the broker started from DATA_DIR and wait for it
#   kafka-local.sh status DATA_DIR           exit 0 when that broker's process is alive
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")
LIBS=${SPENDPIPE_KAFKA_LIBS:-$ROOT/.cache/kafka/libs-$KAFKA_VERSION}
START_TIMEOUT=${SPENDPIPE_KAFKA_START_TIMEOUT:-90}
JAVA_OPTS=${SPENDPIPE_KAFKA_JAVA_OPTS:--Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true}

die() { echo "kafka-local: $*" >&2; exit 1; }

fetch() {
  [ -f "$LIBS/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn not found: Maven is needed to fetch the broker jars"
  echo "kafka-local: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  rm -rf "$LIBS.tmp"
  mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp"
  rm -rf "$LIBS" && mv "$LIBS.tmp" "$LIBS" && touch "$LIBS/.complete"
}

java_cp() { java $JAVA_OPTS -Dlog4j2.configurationFile="$HERE/log4j2.yaml" -cp "$LIBS/*" "$@"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

alive() { [ -f "$1/broker.pid" ] && kill -0 "$(cat "$1/broker.pid")" 2>/dev/null; }

# Close every descriptor above stderr this shell inherited. The broker outlives the script, so
# whatever it inherits stays open as long as it runs: a lock its caller holds (`flock LOCK
# kafka-local.sh start ...`) would never be released. (`/dev/fd` lists this shell's own.)
close_inherited_fds() {
  local fd
  for fd in /dev/fd/*; do
    fd=${fd##*/}
    (( fd > 2 )) && exec {fd}>&-
  done
  return 0
}

start() {
  local dir=$1 port=$2 controller_port=$(( $2 + 1 )) overlay="" format_args=()
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --config) [ $# -ge 2 ] && [ -f "$2" ] || die "--config needs a properties file"; overlay=$2; shift 2 ;;
      --add-scram) [ $# -ge 2 ] || die "--add-scram needs a credential"; format_args+=(--add-scram "$2"); shift 2 ;;
      *) die "start: unknown option $1" ;;
    esac
  done
  fetch
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  alive "$dir" && die "a broker from $dir is already running (pid $(cat "$dir/broker.pid"))"
  port_open "$port" && die "port $port on 127.0.0.1 is already in use"
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" -e "s|@DATA_DIR@|$dir|g" \
      "$HERE/server.properties" ${overlay:+"$overlay"} > "$dir/server.properties"
  chmod 600 "$dir/server.properties"  # an overlay may hold listener passwords
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster_id
    # as Kafka's own random ids: never one that starts with '-', which format would take for an option
    cluster_id=$(python3 -c 'import base64,uuid
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(i)')
    java_cp kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" "${format_args[@]}" \
        > "$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "formatting $dir failed"; }
  fi
  # setsid: the broker must not die with the shell (or test process group) that started it.
  # A subshell that execs, so $! is still the broker's pid.
  (
    close_inherited_fds
    exec setsid nohup java $JAVA_OPTS -Dlog4j2.configurationFile="$HERE/log4j2.yaml" \
        -Dkafka.logs.dir="$dir" -cp "$LIBS/*" kafka.Kafka "$dir/server.properties"
  ) > "$dir/broker.log" 2>&1 < /dev/null &
  echo $! > "$dir/broker.pid"
  local deadline=$(( SECONDS + START_TIMEOUT ))
  until port_open "$port" && grep -q "Kafka Server started" "$dir/broker.log"; do
    alive "$dir" || { tail -n 40 "$dir/broker.log" >&2; die "broker exited during start-up"; }
    (( SECONDS < deadline )) || { tail -n 40 "$dir/broker.log" >&2; die "broker not ready after ${START_TIMEOUT}s"; }
    sleep 0.2
  done
  echo "kafka-local: broker ready on 127.0.0.1:$port (data in $dir)"
}

stop() {
  local dir=$1
  alive "$dir" || { rm -f "$dir/broker.pid"; return 0; }
  local pid
  pid=$(cat "$dir/broker.pid")
  kill -TERM "$pid"
  local deadline=$(( SECONDS + 30 ))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.2
  done
  rm -f "$dir/broker.pid"
  echo "kafka-local: broker from $dir stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  start) [ $# -ge 3 ] || die "usage: $0 start DATA_DIR PORT [--config FILE] [--add-scram SPEC]..."; shift; start "$@" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DATA_DIR"; stop "$2" ;;
  status) [ $# -eq 2 ] || die "usage: $0 status DATA_DIR"; alive "$2" ;;
  *) die "usage: $0 fetch | start DATA_DIR PORT [--config FILE] [--add-scram SPEC]... | stop DATA_DIR | status DATA_DIR" ;;
esac
