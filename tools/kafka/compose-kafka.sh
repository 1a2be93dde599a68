#!/usr/bin/env bash
# docker compose: start the official apache/kafka image secured like `preuve kafka up`.
# The image renders server.properties from the KAFKA_* variables of docker-compose.yml;
# this wrapper adds what cannot sit in plain variables (passwords read from the
# kafka-secrets volume) and formats the log directory with every service's SCRAM user
# (KIP-900: users exist before the first start), then hands over to the image's launch.
set -euo pipefail
secrets=/etc/kafka/secrets
store=$(cat "$secrets/store.password")
export KAFKA_SSL_TRUSTSTORE_LOCATION="$secrets/truststore.p12"
export KAFKA_SSL_TRUSTSTORE_PASSWORD="$store"
# listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config (the image maps _ to ., __ to _
# and ___ to -): the broker's own SCRAM login, as the admin super user.
export KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___512_SASL_JAAS_CONFIG="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$(cat "$secrets/admin.password")\";"

. /etc/kafka/docker/bash-config
. /etc/kafka/docker/configureDefaults
/etc/kafka/docker/configure

if [[ ! -f /var/lib/kafka/data/meta.properties ]]; then
  scram=()
  for file in "$secrets"/*.password; do
    user=$(basename "$file" .password)
    [[ "$user" == store ]] && continue
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$file")]")
  done
  # Its output holds the SCRAM salts and stored keys: never shown.
  /opt/kafka/bin/kafka-storage.sh format --cluster-id "$CLUSTER_ID" \
    -c /opt/kafka/config/server.properties "${scram[@]}" > /dev/null
fi
exec /etc/kafka/docker/launch
