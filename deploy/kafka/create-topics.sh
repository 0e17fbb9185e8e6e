#!/usr/bin/env bash
# Create inlet's topics (idempotent: an existing topic is left as it is).
#
#   KAFKA_BOOTSTRAP=kafka-1:9092,kafka-2:9092 deploy/kafka/create-topics.sh
#
# Needs kafka-topics.sh from an Apache Kafka installation (on PATH, or in $KAFKA_BIN_DIR; the
# apache/kafka image has it in /opt/kafka/bin, the default here). Environment:
#   KAFKA_BOOTSTRAP          bootstrap servers (required)
#   TOPIC_BEACONS            default inlet.beacons (inlet's INLET_TOPIC_BEACONS)
#   TOPIC_OCCURRENCES        default inlet.occurrences (inlet's INLET_TOPIC_OCCURRENCES)
#   TOPIC_ITEMS              default inlet.items (inlet's INLET_TOPIC_ITEMS: the SDKs' other items)
#   TOPIC_RECORDINGS         default inlet.recordings (inlet's INLET_TOPIC_RECORDINGS: session
#                            recordings in chunks of INLET_RECORDINGS_CHUNK_BYTES, 512 KiB)
#   TOPIC_OTLP_SPANS         default otlp_spans (inlet's INLET_TOPIC_OTLP_SPANS; with
#   TOPIC_OTLP_LOGS          otlp_logs and otlp_metrics: OTLP in the Collector's otlp_proto
#   TOPIC_OTLP_METRICS       encoding, the kafka receiver's default topic names); set one empty
#                            to create none of it (a signal no token sends)
#   TOPIC_DEAD_LETTERS       default inlet.dead-letters (inlet's INLET_TOPIC_DEAD_LETTERS); set
#                            it empty to create none (INLET_DEAD_LETTERS=off)
#   PARTITIONS               default 512
#   REPLICATION_FACTOR       default 3
#   MIN_INSYNC_REPLICAS      default 2
#   MAX_MESSAGE_BYTES        default 1048576
#   RETENTION_MS             default 604800000 (7 days)
#   KAFKA_COMMAND_CONFIG     optional client properties file (TLS/SASL), passed as --command-config
#   WAIT_SECONDS             how long to wait for the cluster to answer first, default 120
#
# Why these settings:
# - cleanup.policy=delete, NEVER compact. Messages are keyed by session id (beacons) and account
#   id (occurrences), trace id or resource (OTLP) only so that one key's events stay in order on
#   one partition; the key does
#   not identify an event. A compacted topic keeps only the last message per key: every event of
#   a session but its last one would be lost. Events age out by retention instead.
# - replication factor 3 with min.insync.replicas=2: inlet produces with acks=all and the
#   idempotent producer, so a write is acknowledged only once 2 of the 3 replicas have it. One
#   broker can fail (or be restarted for maintenance) with no loss of acknowledged events and no
#   pause in ingest; with 2 replicas down, producing stops (inlet answers 503) instead of keeping
#   events on a single disk.
# - max.message.bytes: inlet's largest event is occurrences_max_event_bytes (default 1,000,000
#   bytes) plus an envelope under 2 KiB, so 1 MiB is enough for the defaults. Raise it (and the
#   brokers' message.max.bytes, and librdkafka's message.max.bytes in inlet's [librdkafka]
#   table) if you raise inlet's caps.
# - partitions: keys are placed by murmur2 modulo the partition count, so adding partitions
#   later moves keys (and breaks per-key order across the change). Create them with the count
#   you plan to keep; 512 leaves room for consumers to scale out.
set -euo pipefail

: "${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP to the bootstrap servers, e.g. kafka-1:9092}"
TOPIC_BEACONS="${TOPIC_BEACONS:-inlet.beacons}"
TOPIC_OCCURRENCES="${TOPIC_OCCURRENCES:-inlet.occurrences}"
TOPIC_ITEMS="${TOPIC_ITEMS:-inlet.items}"
TOPIC_RECORDINGS="${TOPIC_RECORDINGS:-inlet.recordings}"
TOPIC_OTLP_SPANS="${TOPIC_OTLP_SPANS-otlp_spans}"
TOPIC_OTLP_LOGS="${TOPIC_OTLP_LOGS-otlp_logs}"
TOPIC_OTLP_METRICS="${TOPIC_OTLP_METRICS-otlp_metrics}"
TOPIC_DEAD_LETTERS="${TOPIC_DEAD_LETTERS-inlet.dead-letters}"
PARTITIONS="${PARTITIONS:-512}"
REPLICATION_FACTOR="${REPLICATION_FACTOR:-3}"
MIN_INSYNC_REPLICAS="${MIN_INSYNC_REPLICAS:-2}"
MAX_MESSAGE_BYTES="${MAX_MESSAGE_BYTES:-1048576}"
RETENTION_MS="${RETENTION_MS:-604800000}"
WAIT_SECONDS="${WAIT_SECONDS:-120}"

if [[ -n "${KAFKA_BIN_DIR:-}" ]]; then
    kafka_topics="$KAFKA_BIN_DIR/kafka-topics.sh"
elif command -v kafka-topics.sh >/dev/null 2>&1; then
    kafka_topics="$(command -v kafka-topics.sh)"
else
    kafka_topics=/opt/kafka/bin/kafka-topics.sh
fi
if [[ ! -x "$kafka_topics" ]]; then
    echo "create-topics: kafka-topics.sh not found (set KAFKA_BIN_DIR or PATH)" >&2
    exit 1
fi

common=(--bootstrap-server "$KAFKA_BOOTSTRAP")
if [[ -n "${KAFKA_COMMAND_CONFIG:-}" ]]; then
    common+=(--command-config "$KAFKA_COMMAND_CONFIG")
fi

if ((MIN_INSYNC_REPLICAS >= REPLICATION_FACTOR && REPLICATION_FACTOR > 1)); then
    echo "create-topics: warning: min.insync.replicas=$MIN_INSYNC_REPLICAS with replication factor" \
        "$REPLICATION_FACTOR: a single broker down stops producing" >&2
fi

# Wait until the cluster answers (brokers may still be starting).
deadline=$((SECONDS + WAIT_SECONDS))
until "$kafka_topics" "${common[@]}" --list >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
        echo "create-topics: no answer from $KAFKA_BOOTSTRAP within ${WAIT_SECONDS}s" >&2
        exit 1
    fi
    echo "create-topics: waiting for $KAFKA_BOOTSTRAP"
    sleep 2
done

# Items are keyed by account id, dead letters (events refused as invalid) by token id: the same
# policy holds.
for topic in "$TOPIC_BEACONS" "$TOPIC_OCCURRENCES" "$TOPIC_ITEMS" "$TOPIC_RECORDINGS" \
    ${TOPIC_OTLP_SPANS:+"$TOPIC_OTLP_SPANS"} ${TOPIC_OTLP_LOGS:+"$TOPIC_OTLP_LOGS"} \
    ${TOPIC_OTLP_METRICS:+"$TOPIC_OTLP_METRICS"} ${TOPIC_DEAD_LETTERS:+"$TOPIC_DEAD_LETTERS"}; do
    echo "create-topics: $topic (partitions=$PARTITIONS, replication-factor=$REPLICATION_FACTOR)"
    "$kafka_topics" "${common[@]}" --create --if-not-exists \
        --topic "$topic" \
        --partitions "$PARTITIONS" \
        --replication-factor "$REPLICATION_FACTOR" \
        --config cleanup.policy=delete \
        --config min.insync.replicas="$MIN_INSYNC_REPLICAS" \
        --config max.message.bytes="$MAX_MESSAGE_BYTES" \
        --config retention.ms="$RETENTION_MS"
    # --if-not-exists leaves an existing topic as it was: check what it is.
    description="$("$kafka_topics" "${common[@]}" --describe --topic "$topic")"
    summary="${description%%$'\n'*}"
    echo "$summary"
    if [[ "$summary" =~ cleanup\.policy=([a-z]+,)*compact(,|[[:space:]]|$) ]]; then
        echo "create-topics: ERROR: $topic is compacted: all but the last event of each key would" \
            "be lost; set cleanup.policy=delete (kafka-configs.sh --alter)" >&2
        exit 1
    fi
    if [[ ! "$summary" =~ PartitionCount:[[:space:]]*${PARTITIONS}([^0-9]|$) ]]; then
        echo "create-topics: warning: $topic exists with another partition count than $PARTITIONS" >&2
    fi
done
