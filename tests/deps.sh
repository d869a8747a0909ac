#!/usr/bin/env bash
# Installs what the demo and the tests need, when it is missing: Node.js and npm (the IdP runs on
# them), openssl (test certificates), redis-server (shared state), rsyslog (the audit collector),
# curl and jq (the demo), kubernetes-validate (the deploy/ manifests), jsonschema and
# ocsf-json-schema (the audit stream's conformance tests), pySigma and its backends (the SIEM
# rules), Chromium, its WebDriver (chromium-driver: the session tests log in through a real browser)
# and a font (the evidence report is opened, rendered and printed headless), then the
# IdP's npm packages with
# `npm ci` from tests/idp/package-lock.json. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in node:nodejs npm:npm openssl:openssl curl:curl jq:jq redis-server:redis-server rsyslogd:rsyslog systemd-analyze:systemd chromium:chromium chromedriver:chromium-driver; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
# rsyslog's TLS driver (syslog over TLS, RFC 5425) is a package of its own.
dpkg -s rsyslog-openssl >/dev/null 2>&1 || missing+=(rsyslog-openssl)
# The evidence report is rendered with a font of known metrics.
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]} (apt)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "deps: the test IdP (oidc-provider 9) needs Node.js 20 or later; this machine has $(node --version)" >&2
  exit 1
fi

# npm ci writes node_modules/.package-lock.json; a lock file newer than it means a changed IdP.
installed=tests/idp/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ tests/idp/package-lock.json -nt "$installed" ]; then
  echo "deps: installing the test IdP (npm ci in tests/idp)"
  (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)
fi

# The Kubernetes manifests in deploy/ are checked against the API schemas (offline) by
# kubernetes-validate, installed from PyPI into target/tools.
if [ ! -x target/tools/bin/kubernetes-validate ]; then
  echo "deps: installing kubernetes-validate (pip, into target/tools)"
  python3 -m venv target/tools
  target/tools/bin/pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi

# The audit stream's conformance tests validate events with a real JSON Schema validator
# (python-jsonschema) and against the OCSF schemas of schema.ocsf.io as packaged by
# ocsf-json-schema (tests/schema/validate.py), from PyPI into the same target/tools.
if ! target/tools/bin/python -c "import jsonschema, ocsf_json_schema" >/dev/null 2>&1; then
  echo "deps: installing jsonschema and ocsf-json-schema (pip, into target/tools)"
  target/tools/bin/pip install --quiet --disable-pip-version-check jsonschema==4.26.0 ocsf-json-schema==1.2.0
fi

# The SIEM rules of deploy/siem/rules are converted with pySigma (Splunk, Elasticsearch and
# SQLite backends) and run against real audit events (tests/siem/run_rules.py).
if ! target/tools/bin/python -c "import sigma.backends.sqlite, sigma.backends.splunk, sigma.backends.elasticsearch" >/dev/null 2>&1; then
  echo "deps: installing pySigma and its backends (pip, into target/tools)"
  target/tools/bin/pip install --quiet --disable-pip-version-check pysigma==1.5.1 \
    pysigma-backend-sqlite==2.0.0 pysigma-backend-splunk==2.1.0 pysigma-backend-elasticsearch==2.1.1
fi
