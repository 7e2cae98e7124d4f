#!/usr/bin/env bash
# Package one stage: the Chalice app + infra/template.yaml -> out/<stage>/{sam.yaml,deployment.zip}.
# Usage: infra/package.sh <dev|prod> [out-dir]
#   CHALICE / PYTHON: executables (default .venv/bin/...); PROJECT_DIR: the Chalice project (default:
#   this repository; tests/infra may point it at another one).
# Needs no AWS account. The region (AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1) picks the
# serving image: SageMaker pulls ECR images only from the region it runs in (infra/finalize.py).
set -euo pipefail

stage="${1:?usage: infra/package.sh <dev|prod> [out-dir]}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${2:-$root/out/$stage}")"
chalice="${CHALICE:-$root/.venv/bin/chalice}"
python="${PYTHON:-$root/.venv/bin/python}"

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"

cd "${PROJECT_DIR:-$root}"
rm -f "$out/sam.yaml" "$out/deployment.zip"
AWS_DEFAULT_REGION="$region" \
  "$chalice" package --stage "$stage" --merge-template "$root/infra/template.yaml" "$out"
"$python" "$root/infra/finalize.py" "$out/sam.yaml" "$region"
echo "packaged $stage for $region -> $out/sam.yaml"
