#!/usr/bin/env bash
# Create the Docker secrets of docker-compose.yml in ./secrets, once: random passwords
# (never a default), each role's database URL, and the pseudonymisation key. Existing
# files are kept (re-running never rotates anything by accident).
#
# The directory is 0700 (only you reach the files on this host); the files are 0644
# because compose (without swarm) bind-mounts them with the host's owner and mode, and
# each container's unprivileged user must read its own. Preuve refuses a secret file
# that others may write (experiments/secrets.py).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022
mkdir -p secrets
chmod 0700 secrets

new() {  # new NAME VALUE: write secrets/NAME unless it exists
  local path="secrets/$1"
  if [[ ! -e "$path" ]]; then
    printf '%s\n' "$2" > "$path.tmp"
    chmod 0644 "$path.tmp"
    mv "$path.tmp" "$path"
  fi
}

random() { openssl rand -hex 32; }

new postgres_password "$(random)"
new pseudonym_key "$(random)"
new db_admin_url "postgresql+psycopg://postgres:$(head -n1 secrets/postgres_password)@postgres:5432/preuve"
for role in owner gateway worker analysis portal reader; do
  new "db_${role}_password" "$(random)"
  new "db_${role}_url" \
    "postgresql+psycopg://preuve_${role}:$(head -n1 "secrets/db_${role}_password")@postgres:5432/preuve"
done
echo "secrets ready in $(pwd)/secrets (keep them out of version control)"
