# The Kubernetes cluster autoscaler: scales the worker node group between its min and max by
# auto-discovery of the tags on the node groups. Its AWS rights come through EKS Pod Identity.

locals {
  autoscaler_namespace       = "kube-system"
  autoscaler_service_account = "cluster-autoscaler"
}

# The policy of the cluster autoscaler's AWS documentation: read everything, change only the
# Auto Scaling groups of this cluster.
data "aws_iam_policy_document" "autoscaler" {
  statement {
    sid = "Describe"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations",
      "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeTags",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:GetInstanceTypesFromInstanceRequirements",
      "eks:DescribeNodegroup",
    ]
    resources = ["*"]
  }

  statement {
    sid = "ScaleThisCluster"
    actions = [
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.cluster_name}"
      values   = ["owned"]
    }
  }
}

resource "aws_iam_role" "autoscaler" {
  count = var.install_cluster_autoscaler ? 1 : 0

  name               = "${var.cluster_name}-cluster-autoscaler"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "autoscaler" {
  count = var.install_cluster_autoscaler ? 1 : 0

  name   = "cluster-autoscaler"
  role   = aws_iam_role.autoscaler[0].id
  policy = data.aws_iam_policy_document.autoscaler.json
}

resource "aws_eks_pod_identity_association" "autoscaler" {
  count = var.install_cluster_autoscaler ? 1 : 0

  cluster_name    = aws_eks_cluster.this.name
  namespace       = local.autoscaler_namespace
  service_account = local.autoscaler_service_account
  role_arn        = aws_iam_role.autoscaler[0].arn
  tags            = var.tags
}

resource "helm_release" "cluster_autoscaler" {
  count = var.install_cluster_autoscaler ? 1 : 0

  name       = "cluster-autoscaler"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = var.cluster_autoscaler_chart_version
  namespace  = local.autoscaler_namespace

  values = [yamlencode(merge(
    {
      cloudProvider = "aws"
      awsRegion     = local.region
      autoDiscovery = { clusterName = aws_eks_cluster.this.name }
      rbac = {
        serviceAccount = {
          create = true
          name   = local.autoscaler_service_account
        }
      }
      nodeSelector = local.system_labels
      extraArgs = {
        "balance-similar-node-groups" = true
      }
    },
    var.cluster_autoscaler_image_tag == "" ? {} : { image = { tag = var.cluster_autoscaler_image_tag } },
  ))]

  # The pod must start after its Pod Identity association exists to get its credentials.
  depends_on = [
    aws_eks_node_group.system,
    aws_eks_addon.pod_identity_agent,
    aws_eks_pod_identity_association.autoscaler,
    aws_iam_role_policy.autoscaler,
  ]
}
