#!/usr/bin/env bash
# Delete one stage's stack. SageMaker endpoints are made by the app, not by the stack: deleting
# the stack first would leave GPU endpoints running with nothing left to remove them, so this
# refuses while any endpoint with the stage's prefix exists (delete the models first).
# Usage: infra/destroy.sh <dev|prod>
# Keeps the artifact bucket (DeletionPolicy Retain) and says so: the next deploy makes a new one
# (the name is not fixed), so deploy works again; docs/infra.md ("Tear down") says how to copy
# the artifacts across or delete the old bucket.
set -euo pipefail

stage="${1:?usage: infra/destroy.sh <dev|prod>}"
stack="esdeploy-$stage"
output() {
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
prefix="$(output ResourcePrefix)"
bucket="$(output ArtifactBucketName)"

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
echo "deleted $stack"
echo "kept the artifact bucket s3://$bucket on purpose (model artifacts outlive a stack)."
echo "The next 'make deploy STAGE=$stage' creates a new, empty artifact bucket. Then either copy the"
echo "artifacts across:  aws s3 sync s3://$bucket/ s3://<new bucket>/  (the new name is in SSM"
echo "<SsmPrefix>/stack/artifact-bucket), or delete the old bucket (docs/infra.md, 'Tear down')."
echo "SQS refuses a queue name for 60 s after its deletion: wait a minute before deploying again."
