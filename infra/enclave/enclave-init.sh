#!/bin/sh
# Runs inside the Nitro Enclave as PID 1's child. There is no network: only vsock.
#  - RPC from the host: vsock port 5000 → the enclave's unix socket.
#  - Egress: one unix socket per allowed upstream, bridged to the parent's vsock-proxy ports
#    (CID 3 is the parent instance). TLS is done by the enclave process itself.
#  - Shareholders: reached the same way (their own vsock-proxy ports on the parent).
#  - The image holds only dash, socat, node and their libraries (infra/enclave/rootfs.ts): no
#    coreutils, so $RUN is created in the image itself. Upstream TLS is checked against Node's
#    own Mozilla root store, pinned with the Node binary.
set -eu
RUN=/run/securegate
socat VSOCK-LISTEN:5000,fork,reuseaddr UNIX-CONNECT:"$RUN/enclave.sock" &
socat UNIX-LISTEN:"$RUN/egress-openai.sock",fork,reuseaddr VSOCK-CONNECT:3:8001 &
socat UNIX-LISTEN:"$RUN/egress-anthropic.sock",fork,reuseaddr VSOCK-CONNECT:3:8002 &
exec node enclave/main.ts \
  --listen "unix:$RUN/enclave.sock" \
  --shareholders /app/shareholders.json \
  --egress "https://api.openai.com=unix:$RUN/egress-openai.sock" \
  --egress "https://api.anthropic.com=unix:$RUN/egress-anthropic.sock" \
  --egress-only
