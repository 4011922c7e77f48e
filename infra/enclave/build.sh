#!/usr/bin/env bash
# Builds the enclave image and its signed release manifest.
#   infra/enclave/build.sh <release-name> <release-key-file> [<shareholders.json>]
# The shareholder configuration ([{ id, url, publicKey, vsockPort }], default
# infra/enclave/shareholders.json) is built into the image, so PCR0/PCR2 cover it: owners who pin
# this release's PCRs pin which shareholders (and identity keys) its enclaves trust.
# Needs: Debian bookworm (apt-get, dpkg-deb, gcc 12.2.0-14), docker, nitro-cli (on an EC2 instance
# with Nitro Enclaves), Node 24 (npm install).
# Output: dist/enclave-bundle.tar, dist/rootfs.tar, dist/securegate-enclave.eif, dist/release-manifest.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
release="${1:?usage: build.sh <release-name> <release-key-file>}"
key="${2:?usage: build.sh <release-name> <release-key-file>}"
shareholders="${3:-infra/enclave/shareholders.json}"
if [ ! -f "$shareholders" ]; then
  echo "no shareholder configuration at $shareholders ([{ id, url, publicKey, vsockPort }]; see infra/enclave/shareholders.example.json)" >&2
  exit 2
fi
# Every shareholder needs an identity key and a vsock port, or the image could not reach it.
node_modules/.bin/node enclave/main.ts --shareholders "$shareholders" --print-shareholder-bridges > /dev/null
if [ -n "$(git status --porcelain -- enclave protocol attestation infra/enclave package-lock.json)" ]; then
  echo "the enclave sources have uncommitted changes; a release builds from a clean tree" >&2
  exit 2
fi
mkdir -p dist
node_modules/.bin/node infra/enclave/release.ts bundle --out dist/enclave-bundle.tar
# The NSM helper: static, so it needs nothing from the image; the compiler is pinned by version.
want_gcc="gcc (Debian 12.2.0-14+deb12u1) 12.2.0"
if [ "$(gcc --version | head -1)" != "$want_gcc" ]; then
  echo "the NSM helper is built with $want_gcc for a reproducible PCR0; this machine has $(gcc --version | head -1)" >&2
  exit 2
fi
gcc -O2 -static -o dist/securegate-nsm infra/enclave/nsm-helper/securegate-nsm.c
node_modules/.bin/node infra/enclave/rootfs.ts build --out dist/rootfs.tar --bundle dist/enclave-bundle.tar \
  --shareholders "$shareholders" --nsm-helper dist/securegate-nsm --cache dist/debs
docker build -f infra/enclave/Dockerfile -t "securegate-enclave:$release" .
nitro-cli build-enclave --docker-uri "securegate-enclave:$release" --output-file dist/securegate-enclave.eif > dist/measurements.json
node_modules/.bin/node infra/enclave/release.ts manifest --release "$release" --measurements dist/measurements.json \
  --bundle dist/enclave-bundle.tar --key "$key" --out dist/release-manifest.json
echo "built dist/securegate-enclave.eif; publish dist/release-manifest.json"
