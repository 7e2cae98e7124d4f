#!/usr/bin/env bash
# Delete one stage's stack. SageMaker endpoints are made by the app, not by the stack: deleting
# the stack first would leave GPU endpoints running with nothing left to remove them, so this
# refuses while any endpoint with the stage's prefix exists (delete the models first).
# Usage: infra/destroy.sh <dev|prod>
# Keeps the artifact bucket (DeletionPolicy Retain); docs/infra.md says how to empty and delete it.
set -euo pipefail

stage="${1:?usage: infra/destroy.sh <dev|prod>}"
stack="esdeploy-$stage"
prefix="$(aws cloudformation describe-stacks --stack-name "$stack" \
  --query "Stacks[0].Outputs[?OutputKey=='ResourcePrefix'].OutputValue" --output text)"

endpoints="$(aws sagemaker list-endpoints --name-contains "$prefix-" \
  --query "Endpoints[?starts_with(EndpointName, '$prefix-')].EndpointName" --output text)"
if [ -n "$endpoints" ] && [ "$endpoints" != "None" ]; then
  echo "refusing: endpoints still exist: $endpoints" >&2
  echo "delete every model first (POST /delete for each id in GET /models) and wait until done" >&2
  exit 1
fi

aws cloudformation delete-stack --stack-name "$stack"
echo "waiting for $stack to be deleted..."
aws cloudformation wait stack-delete-complete --stack-name "$stack"
echo "deleted $stack; the artifact bucket was kept on purpose"
