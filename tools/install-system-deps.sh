#!/usr/bin/env bash
# Installs what Preuve needs from Debian's packages when it is missing:
# Java 17 and Maven (the local Kafka broker), PostgreSQL (the production store, tested for real),
# Chromium (the portal's browser test drives it with Playwright; never `playwright install`),
# R and the R packages the statistical reference tests compare Preuve's estimators with
# (clubSandwich, estimatr, lme4, lmerTest, pbkrtest, AER, rpact, metafor, psych).
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v Rscript >/dev/null 2>&1 || missing+=(r-base-core)
for pkg in clubsandwich estimatr lme4 lmertest pbkrtest aer rpact metafor psych; do
  dpkg-query -W -f='${Status}' "r-cran-$pkg" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("r-cran-$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: ${missing[*]}. Install them (sudo apt-get install ${missing[*]}) or use docker compose." >&2
  exit 1
fi
echo "Installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
