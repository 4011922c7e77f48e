#!/usr/bin/env bash
# Builds the enclave image and its signed release manifest.
#   infra/enclave/build.sh <release-name> <release-key-file>
# Needs: docker, nitro-cli (on an EC2 instance with Nitro Enclaves), Node 24 (npm install).
# Output: dist/enclave-bundle.tar, dist/securegate-enclave.eif, dist/release-manifest.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
release="${1:?usage: build.sh <release-name> <release-key-file>}"
key="${2:?usage: build.sh <release-name> <release-key-file>}"
# shellcheck disable=SC1091
source infra/enclave/base-image.lock
if [[ "$NODE_IMAGE" == *REPLACE_WITH_DIGEST* ]]; then
  echo "base-image.lock has no pinned digest yet; see the comment in that file" >&2
  exit 2
fi
if [ -n "$(git status --porcelain -- enclave protocol attestation package-lock.json)" ]; then
  echo "the enclave sources have uncommitted changes; a release builds from a clean tree" >&2
  exit 2
fi
mkdir -p dist
node_modules/.bin/node infra/enclave/release.ts bundle --out dist/enclave-bundle.tar
docker build --build-arg NODE_IMAGE="$NODE_IMAGE" --build-arg SOCAT_VERSION="$SOCAT_VERSION" \
  -f infra/enclave/Dockerfile -t "securegate-enclave:$release" .
nitro-cli build-enclave --docker-uri "securegate-enclave:$release" --output-file dist/securegate-enclave.eif > dist/measurements.json
node_modules/.bin/node infra/enclave/release.ts manifest --release "$release" --measurements dist/measurements.json \
  --bundle dist/enclave-bundle.tar --key "$key" --out dist/release-manifest.json
echo "built dist/securegate-enclave.eif; publish dist/release-manifest.json"
