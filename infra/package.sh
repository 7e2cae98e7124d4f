#!/usr/bin/env bash
# Package one stage: the Chalice app + infra/template.yaml -> out/<stage>/{sam.yaml,deployment.zip}.
# Usage: infra/package.sh <dev|prod> [out-dir]
#   CHALICE / PYTHON: executables (default .venv/bin/...); PROJECT_DIR: the Chalice project (default:
#   this repository; tests/infra may point it at another one).
# Needs no AWS account: the region only has to be set because Chalice asks for one.
set -euo pipefail

stage="${1:?usage: infra/package.sh <dev|prod> [out-dir]}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${2:-$root/out/$stage}")"
chalice="${CHALICE:-$root/.venv/bin/chalice}"
python="${PYTHON:-$root/.venv/bin/python}"

cd "${PROJECT_DIR:-$root}"
rm -f "$out/sam.yaml" "$out/deployment.zip"
AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
  "$chalice" package --stage "$stage" --merge-template "$root/infra/template.yaml" "$out"
"$python" "$root/infra/finalize.py" "$out/sam.yaml"
echo "packaged $stage -> $out/sam.yaml"
