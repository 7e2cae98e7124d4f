#!/usr/bin/env bash
# Create the service-linked roles esdeploy's stage relies on, once per account (aws CLI v2 on PATH).
# Usage: infra/service-linked-roles.sh   (infra/deploy.sh runs it before every deploy)
#
# Application Auto Scaling creates AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint on the
# first RegisterScalableTarget for SageMaker in an account, and only for a caller that may
# iam:CreateServiceLinkedRole (Application Auto Scaling user guide, "Service-linked roles").
# The deploy worker may (infra/iam/deploy-worker.json), but making it here, with the deployer's
# rights, means the first autoscaled deploy does not depend on that grant; `esdeploy doctor` checks it.
set -euo pipefail

ensure_role() {
  local name="$1" service="$2"
  if aws iam get-role --role-name "$name" >/dev/null 2>&1; then
    return 0
  fi
  echo "creating the service-linked role $name ($service)"
  aws iam create-service-linked-role --aws-service-name "$service" >/dev/null
}

ensure_role AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint sagemaker.application-autoscaling.amazonaws.com
