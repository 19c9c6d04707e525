#!/bin/sh
# One-shot set-up of the exchange docker-compose.yml runs (its `pcfx-setup` service), as the
# operator (a super user: /secrets/kafka/admin.properties), into the `pcfx-secrets` volume that
# the services mount read-only at /secrets/pcfx:
#
#   keys/operator.pub.pem   the operator's public key (--operator-key of streams and gateway)
#   keys/streams.key.pem    the streams' service key, registered by the operator (role service)
#   keys/gateway.key.pem    the gateway's signing key
#   api/clients.yaml        one PACT API client (its secret in api/client.json: hand it over)
#   keys/gateway.key.pub.pem  the gateway's public key (the console verifies the audit with it)
#   keys/officer.key.pem    a compliance officer's key, registered by the operator (role officer)
#   console/users.json      that officer's console login (its password in console/password)
#
# then the topics and every schema the services write (a service's own principal may only read
# the schema registry). Everything is made once: a marker file says the set-up is complete, and
# a set-up that stopped half-way starts again from nothing.
set -eu
S=${PCFX_SETUP_DIR:-/secrets/pcfx}  # (another folder: a rehearsal outside Docker)
if [ -f "$S/complete" ]; then
    echo "pcfx-setup: already complete"
    exit 0
fi
rm -rf "$S/keys" "$S/api" "$S/console"
mkdir -p "$S/keys" "$S/api" "$S/console"
field() { python -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

pcfx keys new --operator --out-dir "$S/keys" --json > "$S/keys/operator.json"
pcfx keys new --supplier pcfx-streams --out-dir "$S/keys" --json > "$S/keys/streams.json"
cp "$(field "$S/keys/operator.json" publicKey)" "$S/keys/operator.pub.pem"
cp "$(field "$S/keys/streams.json" privateKey)" "$S/keys/streams.key.pem"
pcfx gateway keys signing --out "$S/keys/gateway.key.pem"
test -f "$S/keys/gateway.key.pub.pem"   # (written beside it: the console's --gateway-pub)
pcfx keys new --supplier officer --out-dir "$S/keys" --json > "$S/keys/officer.json"
cp "$(field "$S/keys/officer.json" privateKey)" "$S/keys/officer.key.pem"

pcfx streams topics
python -m pcf_exchange.infra.compose.register_schemas
pcfx keys register --key "$(field "$S/keys/operator.json" privateKey)" --role service \
    --public-key "$(field "$S/keys/streams.json" publicKey)"
pcfx keys register --key "$(field "$S/keys/operator.json" privateKey)" --role officer \
    --public-key "$(field "$S/keys/officer.json" publicKey)"

pcfx api hash-secret --generate --json > "$S/api/client.json"
printf 'compose-client:\n  recipient: eu-battery-oem-de\n  secret_hash: "%s"\n' \
    "$(field "$S/api/client.json" secret_hash)" > "$S/api/clients.yaml"
(umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(18))' > "$S/console/password")
if pcfx console add-user --help > /dev/null 2>&1; then   # (the console: #20 item 2)
    PCFX_CONSOLE_PASSWORD=$(cat "$S/console/password") pcfx console add-user officer \
        --key "$S/keys/officer.key.pem" --users "$S/console/users.json" \
        --password-env PCFX_CONSOLE_PASSWORD
fi
touch "$S/complete"
echo "pcfx-setup: complete"
