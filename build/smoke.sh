#!/usr/bin/env bash
# Run the built executable on the example config (in a scratch folder), submit one message
# through its CLI and check the simulated modem sent it.
set -euo pipefail
cd "$(dirname "$0")/.."
exe=$(pwd)/build/out/dist/edgegw
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s/^port = 8080/port = $port/" -e "s/^port = 2775 /port = 0 /" -e "s/^port = 2525 /port = 0 /" config.example.toml > "$work/config.toml"
"$exe" check-config "$work/config.toml"
"$exe" serve --config "$work/config.toml" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
# The WSDL and its schemas are package data inside the executable.
for doc in 'gw/ws/SMSGatewayV10?wsdl' 'gw/ws/SMSGatewayV10?xsd=request' 'mgmt/ws/GatewayManagementV10?wsdl'; do
    python3 -c "import urllib.request,sys; b=urllib.request.urlopen('http://127.0.0.1:$port/$doc', timeout=5).read(); sys.exit(b'targetNamespace' not in b)"
done
id=$("$exe" send --config "$work/config.toml" --to +4741000000 --text "smoke test" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["messageId"])')
for _ in $(seq 1 100); do
    state=$("$exe" status --config "$work/config.toml" "$id" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    if [ "$state" = sent ]; then
        echo "smoke: message $id was sent by the executable"
        exit 0
    fi
    sleep 0.1
done
echo "smoke: message $id is still $state" >&2
cat "$work/serve.log" >&2
exit 1
