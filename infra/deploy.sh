#!/usr/bin/env bash
# Deploy one stage to the AWS account of the current credentials (aws CLI v2 on PATH).
# Usage: infra/deploy.sh <dev|prod>
#   ALARM_EMAIL   optional address for the alarm topic
#   API_THROTTLE_RATE, API_THROTTLE_BURST  optional API Gateway stage throttling (requests/s, burst);
#                 unset: the template's defaults on create, the stack's current values on update
#   CODE_BUCKET   bucket for the Lambda code zip (default: esdeploy-code-<account>-<region>,
#                 created on first use: private, encrypted)
set -euo pipefail

stage="${1:?usage: infra/deploy.sh <dev|prod>}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/out/$stage"
stack="esdeploy-$stage"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region || true)}}"
: "${region:?set AWS_REGION (or AWS_DEFAULT_REGION) to the region to deploy to}"
export AWS_REGION="$region" AWS_DEFAULT_REGION="$region"
account="$(aws sts get-caller-identity --query Account --output text)"
bucket="${CODE_BUCKET:-esdeploy-code-$account-$region}"

"$root/infra/package.sh" "$stage" "$out"

# CloudFormation takes Lambda code from S3, so the code bucket must exist before the stack does.
if ! aws s3api head-bucket --bucket "$bucket" 2>/dev/null; then
  echo "creating code bucket s3://$bucket"
  if [ "$region" = "us-east-1" ]; then
    aws s3api create-bucket --bucket "$bucket" >/dev/null
  else
    aws s3api create-bucket --bucket "$bucket" \
      --create-bucket-configuration "LocationConstraint=$region" >/dev/null
  fi
  aws s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
fi

# Application Auto Scaling's role for SageMaker variants: made once per account (docs/infra.md).
"$root/infra/service-linked-roles.sh"

# `cloudformation deploy` keeps a stack's previous parameter values unless told otherwise, so
# pass every value finalize.py pinned: a changed .chalice/config.json must reach the stack.
pinned="$(cat "$out/parameters.txt")"  # one Name=value per line; split on purpose below
throttling=""
[ -n "${API_THROTTLE_RATE:-}" ] && throttling="$throttling ApiThrottlingRateLimit=$API_THROTTLE_RATE"
[ -n "${API_THROTTLE_BURST:-}" ] && throttling="$throttling ApiThrottlingBurstLimit=$API_THROTTLE_BURST"

aws cloudformation package --template-file "$out/sam.yaml" --s3-bucket "$bucket" \
  --s3-prefix "$stack" --output-template-file "$out/packaged.yaml"
aws cloudformation deploy --template-file "$out/packaged.yaml" --stack-name "$stack" \
  --s3-bucket "$bucket" --s3-prefix "$stack" \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
  --parameter-overrides $pinned $throttling "AlarmEmail=${ALARM_EMAIL:-}" \
  --tags managed-by=esdeploy "stage=$stage" \
  --no-fail-on-empty-changeset
aws cloudformation describe-stacks --stack-name "$stack" \
  --query "Stacks[0].Outputs[].[OutputKey,OutputValue]" --output table
