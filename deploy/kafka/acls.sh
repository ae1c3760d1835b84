#!/usr/bin/env bash
# spendpipe's Kafka ACLs, in one place: what each service's principal may do on a cluster that
# runs an authorizer (KRaft: org.apache.kafka.metadata.authorizer.StandardAuthorizer) with
# allow.everyone.if.no.acl.found=false. docs/operations.md ("Kafka ACLs") explains them;
# tests/integration/test_kafka_acls.py runs this script against a real broker.
#
#   acls.sh grant --bootstrap-server HOST:PORT --command-config FILE [options]
#       add every ACL below (adding an ACL that exists changes nothing: run it again freely)
#   acls.sh user NAME --bootstrap-server HOST:PORT --command-config FILE
#       create NAME's SCRAM-SHA-512 credential, or change its password; the password is read
#       from stdin (kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=...]')
#   acls.sh list --bootstrap-server HOST:PORT --command-config FILE
#
# FILE: Kafka client properties of an administrator who may alter ACLs (a super user, or ALTER
# on the cluster): security.protocol, sasl.mechanism, sasl.jaas.config, ssl.truststore.*.
#
# grant options (defaults in brackets):
#   --gateway NAME [gateway]        --aggregator NAME [aggregator]    --enforcer NAME [enforcer]
#   --admin NAME [spendpipe-admin]  --reader NAME [reader]
#   --aggregator-group ID [$SPENDPIPE_GROUP_ID or spendpipe-aggregator]
#   --enforcer-group ID [$SPENDPIPE_ENFORCER_GROUP_ID or spendpipe-enforcer]
#   --dry-run                       print the kafka-acls commands instead of running them
# Topic names are the services' own settings: SPENDPIPE_TOPICS__EVENTS [spend.events], ...
#
# The Kafka tools: $KAFKA_BIN/kafka-acls.sh and kafka-configs.sh when KAFKA_BIN is set (a Kafka
# distribution or the apache/kafka image: KAFKA_BIN=/opt/kafka/bin), otherwise the broker jars
# deploy/kafka/kafka-local.sh fetched into .cache/kafka.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

die() { echo "acls.sh: $*" >&2; exit 1; }

EVENTS=${SPENDPIPE_TOPICS__EVENTS:-spend.events}
DLQ=${SPENDPIPE_TOPICS__EVENTS_DEAD_LETTER:-spend.events.dlq}
FLUSHES=${SPENDPIPE_TOPICS__FLUSHES:-spend.flushes}
DECISIONS=${SPENDPIPE_TOPICS__DECISIONS:-spend.decisions}
BUDGETS=${SPENDPIPE_TOPICS__BUDGETS:-spend.budgets}
DECLARED=${SPENDPIPE_TOPICS__DECLARED_BUDGETS:-spend.budgets.declared}
ALERTS=${SPENDPIPE_TOPICS__ALERTS:-spend.alerts}
SESSIONS=${SPENDPIPE_TOPICS__SESSIONS:-spend.sessions}
LEASE_REQUESTS=${SPENDPIPE_TOPICS__LEASE_REQUESTS:-spend.lease_requests}
LEASES=${SPENDPIPE_TOPICS__LEASES:-spend.leases}

GATEWAY=gateway AGGREGATOR=aggregator ENFORCER=enforcer ADMIN=spendpipe-admin READER=reader
AGGREGATOR_GROUP=${SPENDPIPE_GROUP_ID:-spendpipe-aggregator}
ENFORCER_GROUP=${SPENDPIPE_ENFORCER_GROUP_ID:-spendpipe-enforcer}
BOOTSTRAP="" COMMAND_CONFIG="" DRY_RUN=0

kafka_tool() {  # kafka_tool acls|configs ARGS...
  local tool=$1 class
  shift
  if [ -n "${KAFKA_BIN:-}" ]; then
    "$KAFKA_BIN/kafka-$tool.sh" "$@"
    return
  fi
  case "$tool" in acls) class=org.apache.kafka.tools.AclCommand ;; configs) class=kafka.admin.ConfigCommand ;; esac
  local version libs
  version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")
  libs=${SPENDPIPE_KAFKA_LIBS:-$ROOT/.cache/kafka/libs-$version}
  [ -f "$libs/.complete" ] || die "no Kafka tools: set KAFKA_BIN, or run deploy/kafka/kafka-local.sh fetch"
  java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx256m -Dlog4j2.configurationFile="$HERE/tools-log4j2.yaml" \
      -cp "$libs/*" "$class" "$@"
}

# allow PRINCIPAL OPERATIONS RESOURCES...: one kafka-acls --add; every operation applies to every
# resource, so a principal needs one call per distinct set of operations.
allow() {
  local principal=$1 ops=$2 args=()
  shift 2
  for op in $ops; do args+=(--operation "$op"); done
  args+=("$@")
  if (( DRY_RUN )); then
    echo "kafka-acls.sh --bootstrap-server $BOOTSTRAP --command-config ${COMMAND_CONFIG:-admin.properties} --add --allow-principal User:$principal ${args[*]}"
  else
    kafka_tool acls --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \
        --add --allow-principal "User:$principal" "${args[@]}" > /dev/null
    local what="$*"
    echo "acls.sh: User:$principal may $ops on ${what//--/}"
  fi
}

grant_gateway() {
  # writes events, its sessions log, the budgets LiteLLM key objects declare and its lease requests;
  # reads decisions (block list), budgets (rate limits, session caps), the sessions log (other
  # gateways' admissions) and lease grants; no consumer group
  allow "$GATEWAY" "Write" --topic "$EVENTS" --topic "$SESSIONS" --topic "$DECLARED" --topic "$LEASE_REQUESTS"
  allow "$GATEWAY" "Read" --topic "$DECISIONS" --topic "$BUDGETS" --topic "$SESSIONS" --topic "$LEASES"
}

grant_aggregator() {
  # consumes events in its group; writes dead letters and flush announcements
  allow "$AGGREGATOR" "Read" --topic "$EVENTS" --group "$AGGREGATOR_GROUP"
  allow "$AGGREGATOR" "Write" --topic "$DLQ" --topic "$FLUSHES"
}

grant_enforcer() {
  # consumes flushes in its group and lease requests in its lease desk's group; reads budgets
  # (declared ones too), and its own decisions and alerts back at start; writes decisions, alerts
  # and lease grants
  allow "$ENFORCER" "Read" --topic "$FLUSHES" --topic "$BUDGETS" --topic "$DECLARED" --topic "$DECISIONS" \
      --topic "$ALERTS" --topic "$LEASE_REQUESTS" --group "$ENFORCER_GROUP" --group "$ENFORCER_GROUP-leases"
  allow "$ENFORCER" "Write" --topic "$DECISIONS" --topic "$ALERTS" --topic "$LEASES"
}

grant_admin() {
  # spendpipe topics create, budgets set/list/delete, blocks list: creates the topics, writes
  # budgets, reads budgets and decisions
  allow "$ADMIN" "Create Describe" --topic "$EVENTS" --topic "$DLQ" --topic "$FLUSHES" --topic "$DECISIONS" \
      --topic "$BUDGETS" --topic "$DECLARED" --topic "$ALERTS" --topic "$SESSIONS" --topic "$LEASE_REQUESTS" \
      --topic "$LEASES"
  allow "$ADMIN" "Write" --topic "$BUDGETS"
  allow "$ADMIN" "Read" --topic "$BUDGETS" --topic "$DECISIONS"
}

grant_reader() {
  # analysts, operators, dashboards: read every topic, in consumer groups named READER...;
  # write nothing
  allow "$READER" "Read" --topic "$EVENTS" --topic "$DLQ" --topic "$FLUSHES" --topic "$DECISIONS" \
      --topic "$BUDGETS" --topic "$DECLARED" --topic "$ALERTS" --topic "$SESSIONS" --topic "$LEASE_REQUESTS" \
      --topic "$LEASES"
  allow "$READER" "Read" --resource-pattern-type prefixed --group "$READER"
}

PRINCIPALS=(gateway aggregator enforcer admin reader)

grant() {
  if (( DRY_RUN )); then
    for who in "${PRINCIPALS[@]}"; do "grant_$who"; done
    return
  fi
  # one JVM per kafka-acls call: the principals' calls run side by side
  local pids=() failed=0 pid
  for who in "${PRINCIPALS[@]}"; do "grant_$who" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  (( failed == 0 )) || die "some ACLs were not added (see above); adding them again is harmless"
}

user() {
  local name=$1 password
  IFS= read -r password || [ -n "$password" ] || die "no password on stdin"
  [[ "$password" != *[],=[]* ]] || die "the password may not contain , = [ or ]"
  kafka_tool configs --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" --alter \
      --entity-type users --entity-name "$name" --add-config "SCRAM-SHA-512=[password=$password]" > /dev/null
  echo "acls.sh: SCRAM credentials of $name set"
}

command=${1:-}
[ -n "$command" ] && shift
name=""
if [ "$command" = user ]; then
  [ $# -ge 1 ] || die "usage: acls.sh user NAME --bootstrap-server HOST:PORT --command-config FILE"
  name=$1
  shift
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --bootstrap-server) BOOTSTRAP=${2:?}; shift 2 ;;
    --command-config) COMMAND_CONFIG=${2:?}; shift 2 ;;
    --gateway) GATEWAY=${2:?}; shift 2 ;;
    --aggregator) AGGREGATOR=${2:?}; shift 2 ;;
    --enforcer) ENFORCER=${2:?}; shift 2 ;;
    --admin) ADMIN=${2:?}; shift 2 ;;
    --reader) READER=${2:?}; shift 2 ;;
    --aggregator-group) AGGREGATOR_GROUP=${2:?}; shift 2 ;;
    --enforcer-group) ENFORCER_GROUP=${2:?}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) die "unknown option $1" ;;
  esac
done
[ -n "$BOOTSTRAP" ] || die "--bootstrap-server is required"
(( DRY_RUN )) || [ -f "$COMMAND_CONFIG" ] || die "--command-config needs the administrator's client properties file"

case "$command" in
  grant) grant ;;
  user) user "$name" ;;
  list) kafka_tool acls --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" --list ;;
  *) die "usage: acls.sh grant|user NAME|list --bootstrap-server HOST:PORT --command-config FILE [options]" ;;
esac
