#!/usr/bin/env bash
# The invoiceguard demo: starts the real IdP (oidc-provider), the example invoicing API and the
# gateway on embedded defaults (examples/demo/invoiceguard.toml), walks through allowed and denied
# calls with curl, and prints the audit events those calls produced. Everything it starts is
# stopped when it ends. Run it with `make demo` (which builds and installs what it needs).
set -euo pipefail
cd "$(dirname "$0")/../.."

IDP=http://127.0.0.1:9400
API=127.0.0.1:9500
GATEWAY=http://127.0.0.1:8080
STATE=.demo
BIN=${CARGO_TARGET_DIR:-target}/debug

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

for port in 9400 9500 8080; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo: port $port is already in use; stop what listens there and run the demo again" >&2
    exit 1
  fi
done

mkdir -p "$STATE"
rm -rf "$STATE/audit"

node tests/idp/server.mjs --port 9400 --keys "$STATE/keys.json" --gateway "$GATEWAY" >"$STATE/idp.log" 2>&1 &
pids+=($!)
"$BIN/invoicing-api" --listen "$API" >"$STATE/api.log" 2>&1 &
pids+=($!)
wait_for() { for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "demo: $1 did not come up (see $STATE/*.log)" >&2; exit 1; }
wait_for "$IDP/.well-known/openid-configuration"
wait_for "http://$API/healthz"
INVOICEGUARD_LOG=warn "$BIN/invoiceguard" serve --config examples/demo/invoiceguard.toml >"$STATE/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break; sleep 0.1; done

token() { # user [amr]
  curl -fs -u invoiceguard-demo:demo-client-secret \
    -d grant_type=urn:invoiceguard:params:grant-type:password \
    -d username="$1" -d password="$1-password" ${2:+-d amr="$2"} \
    "$IDP/token" | jq -r .access_token
}
call() { # title token method path [json]
  local title=$1 tok=$2 method=$3 path=$4 body=${5:-}
  bold "$title"
  echo "\$ curl -X $method $GATEWAY$path${tok:+ -H 'Authorization: Bearer …'}${body:+ -d '$body'}"
  local args=(-s -X "$method" -D "$STATE/headers" -o "$STATE/body")
  [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' -d "$body")
  curl "${args[@]}" "$GATEWAY$path"
  head -1 "$STATE/headers" | tr -d '\r'
  grep -i '^www-authenticate' "$STATE/headers" | tr -d '\r' || true
  jq -c . "$STATE/body" 2>/dev/null || cat "$STATE/body"
}

bold "Alice (invoicing role) logs in at the IdP; her token says who she is and how she logged in:"
ALICE=$(token alice)
echo "$ALICE" | cut -d. -f2 | tr '_-' '/+' | base64 -d 2>/dev/null | jq -c '{sub, roles, amr, acr, aud, iss}' || true

call "1. Alice creates an invoice — allowed (role.invoicing):" "$ALICE" POST /invoices '{"partner_id":"P-1","amount":480.0,"currency":"EUR"}'
call "2. Alice tries to change the global settings — denied (rbac.invoicing-no-administration):" "$ALICE" PUT /settings '{"company":"Mallory Ltd."}'
call "3. A call with no token — 401 with an RFC 6750 challenge:" "" GET /invoices
call "4. A path the route table does not know — denied by default:" "$ALICE" GET /admin/export-everything
call "5. Alice submits the invoice; Bob (approver) approves it — allowed:" "$ALICE" POST /invoices/INV-2/submit
BOB=$(token bob)
call "   Bob approves:" "$BOB" POST /invoices/INV-2/approve
call "6. Dave (admin) tries to approve an invoice — denied (sod.admin-never-approves):" "$(token dave)" POST /invoices/INV-1/approve
GRACE=$(token grace)
call "   Grace (invoicing and approver) creates and submits an invoice…" "$GRACE" POST /invoices '{"partner_id":"P-2","amount":90.0}'
curl -s -o /dev/null -X POST -H "Authorization: Bearer $GRACE" "$GATEWAY/invoices/INV-3/submit"
call "   …and may not approve her own (sod.creator-never-approves):" "$GRACE" POST /invoices/INV-3/approve
call "7. Alice logged in with a password only — asked to log in again with MFA (RFC 9470 step-up):" "$(token alice pwd)" GET /invoices
ERP=$(curl -fs -u erp-sync:erp-sync-secret -d grant_type=client_credentials -d 'scope=invoices:read' "$IDP/token" | jq -r .access_token)
call "8. The ERP integration account lists invoices — allowed within its scope:" "$ERP" GET /invoices
call "   …and tries to approve one — denied (integration.no-interactive-actions):" "$ERP" POST /invoices/INV-1/approve
call "9. Carol (accountant) exports 10 invoices — allowed within her daily quota (the rows returned are charged):" "$(token carol)" POST /exports '{"limit":10}'

bold "10. Alice in a browser: the gateway logs her in at the IdP and keeps her session server-side (docs/sessions.md)"
JAR="$STATE/browser-cookies"; rm -f "$JAR"
browse() { curl -s -c "$JAR" -b "$JAR" -o "$STATE/body" -D "$STATE/headers" -w '%{redirect_url}' "$@"; }
echo "\$ open $GATEWAY/invoices        (a browser navigating, no session yet)"
next=$(browse -H 'Accept: text/html' "$GATEWAY/invoices")
echo "  $(head -1 "$STATE/headers" | tr -d '\r') → the IdP: ${next%%\?*}?response_type=code&…&code_challenge_method=S256"
form=$(browse "$next")
echo "  the IdP's login form ($form): Alice types her password and one-time code"
next=$(browse -d username=alice -d password=alice-password -d otp="$(jq -r .test_otp tests/idp/users.json)" "$form/login")
while [ -n "$next" ] && [ "${next#"$GATEWAY"}" = "$next" ]; do next=$(browse "$next"); done
echo "  back at ${next%%\?*}?code=…&state=…"
browse "$next" >/dev/null
grep -i '^set-cookie: __Host-invoiceguard-session' "$STATE/headers" | tr -d '\r' | sed -E 's/session=[^;]+/session=<256 random bits>/; s/^/  /'
echo "\$ open $GATEWAY/invoices        (with the session cookie)"
browse "$GATEWAY/invoices" >/dev/null; echo "  $(head -1 "$STATE/headers" | tr -d '\r') $(jq -c '[.[] | {id, amount, status}]' "$STATE/body")"
echo "\$ curl $GATEWAY/.invoiceguard/session"
browse "$GATEWAY/.invoiceguard/session" >/dev/null; echo "  $(jq -c '{subject, roles, mfa, idle_expires, absolute_expires, device}' "$STATE/body")"
echo "\$ a page on another site posts a form with Alice's cookie (Origin: https://evil.example)"
browse -H 'Origin: https://evil.example' -H 'Content-Type: application/json' -d '{"partner_id":"P-1","amount":1}' "$GATEWAY/invoices" >/dev/null
echo "  $(head -1 "$STATE/headers" | tr -d '\r') $(jq -c '{type, detail}' "$STATE/body")"
echo "\$ open $GATEWAY/.invoiceguard/logout"
next=$(browse "$GATEWAY/.invoiceguard/logout")
echo "  $(head -1 "$STATE/headers" | tr -d '\r') → the IdP's end-session page (${next%%\?*}); the session is gone on every replica:"
browse "$GATEWAY/invoices" >/dev/null; echo "  $GATEWAY/invoices with the old cookie: $(head -1 "$STATE/headers" | tr -d '\r')"

bold "The audit trail (the spool $STATE/audit/): one event per request, allowed or denied"
table() { if command -v column >/dev/null; then column -t -s $'\t'; else cat; fi; }
{ printf 'seq\teffect\tactor\tmethod\tpath\tstatus\twhy\n'
  jq -r '[.seq, .decision.effect, (.actor.id // "-"), .request.method, .request.path, (.outcome.status|tostring),
          (if (.decision.policies|length) > 0 then (.decision.policies|join(","))
           elif .decision.reason == "session" then (.action + (if .decision.detail then " (" + .decision.detail + ")" else "" end))
           else .decision.reason + (if .decision.detail then " (" + .decision.detail + ")" else "" end) end)]
         | @tsv' "$STATE"/audit/*.jsonl; } | table

bold "One event in full (the denied settings change):"
jq 'select(.request.path == "/settings")' "$STATE"/audit/*.jsonl

bold "The auditor's first questions, answered from this trail (invoiceguard audit query $STATE/audit …):"
query() { echo "\$ invoiceguard audit query $STATE/audit $*"; "$BIN/invoiceguard" audit query "$STATE/audit" "$@"; echo; }
query --who-logged-in
query --invoice INV-3
query --exports
query --admin-changes
query --integration erp-sync

bold "The evidence pack for the auditor (invoiceguard evidence): one section per control of the baseline"
"$BIN/invoiceguard" evidence --config examples/demo/invoiceguard.toml --out "$STATE/evidence"
echo "Open $STATE/evidence/evidence.html in a browser (it prints to PDF); its tables are in $STATE/evidence/csv/, the whole pack in $STATE/evidence/evidence.json."
