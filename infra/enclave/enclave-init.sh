#!/bin/sh
# Runs inside the Nitro Enclave as PID 1's child. There is no network: only vsock.
#  - RPC from the host: vsock port 5000 → the enclave's unix socket.
#  - Egress: one unix socket per allowed upstream, bridged to the parent's vsock-proxy ports
#    (CID 3 is the parent instance). TLS is done by the enclave process itself.
#  - Shareholders: the image carries their configuration (/app/shareholders.json: id, url, X25519
#    identity key, the parent's vsock port for each), so the PCRs the owners pin cover it. One
#    unix socket per shareholder is bridged to its vsock-proxy port on the parent; the enclave
#    reaches shareholder <id> only through $RUN/shareholder-<id>.sock, does TLS itself for https
#    URLs, and accepts a released share only if it authenticates as that shareholder's key (HPKE
#    auth mode), so the host in between relays bytes it can neither read nor forge.
#  - The image holds only dash, socat, node and their libraries (infra/enclave/rootfs.ts): no
#    coreutils, so $RUN is created in the image itself and the shareholder list is read by node.
#    Upstream TLS is checked against Node's own Mozilla root store, pinned with the Node binary.
set -eu
RUN=/run/securegate
SHAREHOLDERS=/app/shareholders.json
socat VSOCK-LISTEN:5000,fork,reuseaddr UNIX-CONNECT:"$RUN/enclave.sock" &
socat UNIX-LISTEN:"$RUN/egress-openai.sock",fork,reuseaddr VSOCK-CONNECT:3:8001 &
socat UNIX-LISTEN:"$RUN/egress-anthropic.sock",fork,reuseaddr VSOCK-CONNECT:3:8002 &
# Fails (and so does the boot, set -e) when a shareholder has no vsockPort.
bridges=$(node enclave/main.ts --shareholders "$SHAREHOLDERS" --print-shareholder-bridges)
echo "$bridges" | while read -r id port; do
  [ -n "$id" ] || continue
  socat UNIX-LISTEN:"$RUN/shareholder-$id.sock",fork,reuseaddr VSOCK-CONNECT:3:"$port" &
done
exec node enclave/main.ts \
  --listen "unix:$RUN/enclave.sock" \
  --shareholders "$SHAREHOLDERS" \
  --shareholder-socket-dir "$RUN" \
  --egress "https://api.openai.com=unix:$RUN/egress-openai.sock" \
  --egress "https://api.anthropic.com=unix:$RUN/egress-anthropic.sock" \
  --egress-only
