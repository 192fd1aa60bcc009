# Hangar's AWS identities, through EKS Pod Identity (no static keys): one role for the control
# plane's ServiceAccount, one for the agent's, each allowed the platform bucket only.

# Read, write, delete and list the platform bucket; nothing else. Pre-signed upload URLs
# (`PUT` of one object) need PutObject only.
data "aws_iam_policy_document" "bucket_access" {
  statement {
    sid       = "ListPlatformBucket"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.platform.arn]
  }

  statement {
    sid = "ObjectsOfPlatformBucket"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
    ]
    resources = ["${aws_s3_bucket.platform.arn}/*"]
  }
}

locals {
  hangar_identities = {
    "control-plane" = local.control_plane_service_account
    agent           = local.agent_service_account
  }
}

resource "aws_iam_role" "hangar" {
  for_each = local.hangar_identities

  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "hangar" {
  for_each = local.hangar_identities

  name   = "platform-bucket"
  role   = aws_iam_role.hangar[each.key].id
  policy = data.aws_iam_policy_document.bucket_access.json
}

resource "aws_eks_pod_identity_association" "hangar" {
  for_each = local.hangar_identities

  cluster_name    = aws_eks_cluster.this.name
  namespace       = var.namespace
  service_account = each.value
  role_arn        = aws_iam_role.hangar[each.key].arn
  tags            = var.tags
}
