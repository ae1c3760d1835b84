#!/usr/bin/env bash
# Kafka's kafka-broker-api-versions.sh, which docker-compose.yml's healthcheck runs, for the
# local image: the same tool class from the kafka-tools jar, logging warnings only.
exec java -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.yaml -cp '/opt/kafka/libs/*' \
  org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
