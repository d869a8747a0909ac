#!/usr/bin/env bash
# Installs what `make bench` compares invoiceguard with, when it is missing: nginx (the plain
# reverse proxy) and Apache with mod_auth_openidc (the JWT-validating proxy), from Debian. They
# are run by the bench itself on free loopback ports, never as system services.
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v apache2 >/dev/null 2>&1 || missing+=(apache2)
dpkg -s libapache2-mod-auth-openidc >/dev/null 2>&1 || missing+=(libapache2-mod-auth-openidc)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench-deps: installing ${missing[*]} (apt)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # Debian starts the services it installs; the bench runs its own instances instead.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  $sudo service nginx stop >/dev/null 2>&1 || true
  $sudo service apache2 stop >/dev/null 2>&1 || true
fi
