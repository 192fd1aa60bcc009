data "aws_region" "current" {}

data "aws_partition" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition
  vpc_cidr  = data.aws_vpc.this.cidr_block

  chart_path = coalesce(var.chart_path, "${path.module}/../../../charts/hangar")

  # The control plane's ServiceAccount is named after the release ("hangar", chart "hangar");
  # the agent's is fixed by the chart.
  control_plane_service_account = "hangar"
  agent_service_account         = "hangar-agent"

  # Node pools, as the nodes are labelled and tainted and as Hangar's cell selects them.
  system_labels = { "node-pool" = "system" }
  worker_labels = { "node-pool" = "workers" }
  worker_taint  = { key = "hangar.dev/workers", value = "true" }
}

# Trust policy of every role assumed through EKS Pod Identity.
data "aws_iam_policy_document" "pod_identity_trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}
