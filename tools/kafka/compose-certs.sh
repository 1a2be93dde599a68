#!/usr/bin/env bash
# docker compose: create, once, what the secured broker and Preuve's services share in the
# kafka-secrets volume (mode 0600): a CA (ca.pem for the clients), the broker's PKCS12 key
# store signed by it (SAN kafka, localhost), a trust store, and one random SCRAM password
# per user (<user>.password). Runs in the official apache/kafka image (keytool), before
# the broker; `preuve kafka up` does the same for the local broker with openssl.
set -euo pipefail
umask 077
dir=/etc/kafka/secrets
if [[ -f "$dir/broker.p12" ]]; then
  echo "kafka secrets already created"
  exit 0
fi
random() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32; }
store=$(random)
printf '%s' "$store" > "$dir/store.password"
for user in admin gateway worker enrollment scheduler analysis; do
  random > "$dir/$user.password"
done
keytool -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity 3650 \
  -dname "CN=Preuve Kafka CA" -ext bc:c -keystore "$dir/ca.p12" -storetype PKCS12 \
  -storepass "$store" -keypass "$store"
keytool -exportcert -rfc -alias ca -keystore "$dir/ca.p12" -storepass "$store" -file "$dir/ca.pem"
keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
  -dname "CN=preuve-broker" -keystore "$dir/broker.p12" -storetype PKCS12 \
  -storepass "$store" -keypass "$store"
keytool -certreq -alias broker -keystore "$dir/broker.p12" -storepass "$store" \
  -file "$dir/broker.csr"
keytool -gencert -alias ca -keystore "$dir/ca.p12" -storepass "$store" -rfc -validity 3650 \
  -infile "$dir/broker.csr" -outfile "$dir/broker.crt" \
  -ext "SAN=DNS:kafka,DNS:localhost,IP:127.0.0.1" -ext "EKU=serverAuth,clientAuth"
keytool -importcert -noprompt -alias ca -file "$dir/ca.pem" -keystore "$dir/broker.p12" \
  -storepass "$store"
keytool -importcert -noprompt -alias broker -file "$dir/broker.crt" \
  -keystore "$dir/broker.p12" -storepass "$store"
keytool -importcert -noprompt -alias ca -file "$dir/ca.pem" -keystore "$dir/truststore.p12" \
  -storetype PKCS12 -storepass "$store"
rm -f "$dir/broker.csr" "$dir/broker.crt"
chmod 0600 "$dir"/*
echo "kafka secrets created"
