#!/usr/bin/env bash
# End-to-end check of a running service at $BASE_URL (the container in `make container-test`,
# or a deployed instance): readiness, sign-up, login, a note summarized by the worker, and an
# unauthenticated request refused as problem+json. Exits non-zero on the first mismatch and
# prints the request, the status and the body it got.
#
#   BASE_URL=http://127.0.0.1:8000 scripts/container-check.sh
set -euo pipefail

: "${BASE_URL:?set BASE_URL, e.g. http://127.0.0.1:8000}"
BASE_URL=${BASE_URL%/}
WAIT_ROUNDS=${WAIT_ROUNDS:-6}   # GET ?wait=10 rounds before giving up on the summary

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
body=$tmp/body headers=$tmp/headers

say() { printf 'check: %s\n' "$*"; }
fail() {
  printf 'check: FAIL: %s\n' "$1" >&2
  if [ -s "$body" ]; then printf '  body: %s\n' "$(head -c 800 "$body")" >&2; fi
  exit 1
}

# request METHOD PATH [JSON] [TOKEN] -> prints the status; body and headers land in files.
request() {
  local method=$1 path=$2 data=${3:-} token=${4:-}
  local args=(-sS -o "$body" -D "$headers" -w '%{http_code}' --max-time 40 -X "$method")
  [ -n "$data" ] && args+=(-H 'content-type: application/json' --data "$data")
  [ -n "$token" ] && args+=(-H "authorization: Bearer $token")
  curl "${args[@]}" "$BASE_URL$path" || true  # -w prints 000 when nothing answers
}

expect() { # expect STATUS ACTUAL WHAT
  [ "$2" = "$1" ] || fail "$3: expected HTTP $1, got $2"
  say "$3 -> $2"
}

# json EXPR: evaluates EXPR with `d` bound to the last response body.
json() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); v = eval(sys.argv[2]); print("" if v is None else v)' \
    "$body" "$1"
}

header() { # header NAME: value of a header in the last response (case-insensitive)
  awk -v n="$1" -F': *' \
    'tolower($1) == tolower(n) { sub(/\r$/, "", $2); print $2; exit }' "$headers"
}

say "target $BASE_URL"

expect 200 "$(request GET /healthz)" "GET /healthz"
expect 200 "$(request GET /readyz)" "GET /readyz"
[ "$(json 'd["status"]')" = ok ] || fail "/readyz did not say ok"

expect 401 "$(request GET /notes)" "GET /notes without a token"
ctype=$(header content-type)
[[ "$ctype" == application/problem+json* ]] || fail "401 content-type is '$ctype', not application/problem+json"
[ "$(json 'd["status"]')" = 401 ] || fail "401 problem body lacks \"status\": 401"
say "401 is application/problem+json"

email="container-check-$(date +%s)-$RANDOM@example.com"
password="check-$(openssl rand -hex 12)"
credentials="{\"email\":\"$email\",\"password\":\"$password\"}"

expect 201 "$(request POST /auth/signup "$credentials")" "POST /auth/signup ($email)"
[ -n "$(json 'd["access_token"]')" ] || fail "signup answered without an access_token"

expect 200 "$(request POST /auth/login "$credentials")" "POST /auth/login"
token=$(json 'd["access_token"]')
[ -n "$token" ] || fail "login answered without an access_token"

note='{"title":"Acme call","raw_text":"Dana from Acme called about the CRM export. They need it by Friday because the board meets on Monday. She also asked whether the export can include archived contacts. We agreed to send a sample file on Wednesday and to confirm the format with their analyst."}'
expect 202 "$(request POST /notes "$note" "$token")" "POST /notes"
id=$(json 'd["id"]')
status=$(json 'd["status"]')
[ -n "$id" ] || fail "POST /notes answered without an id"
say "note $id is $status"

for _ in $(seq "$WAIT_ROUNDS"); do
  [ "$status" = "done" ] && break
  [ "$status" = failed ] && fail "the note's summary failed: $(json 'd["error"]')"
  expect 200 "$(request GET "/notes/$id?wait=10" "" "$token")" "GET /notes/$id?wait=10"
  status=$(json 'd["status"]')
  say "note $id is $status"
done
[ "$status" = "done" ] || fail "the note is still '$status' after $WAIT_ROUNDS waits of 10 s"
summary=$(json 'd["summary"]')
[ -n "${summary// /}" ] || fail "the note is done but its summary is empty"
say "summary: ${summary:0:120}"

say "PASS"
