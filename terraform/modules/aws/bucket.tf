# The platform bucket: environments' DAGs, plugins, requirements and task logs. Private,
# encrypted, reachable only by Hangar's two roles (pod_identity.tf) and over TLS.

resource "aws_s3_bucket" "platform" {
  bucket        = var.bucket_name == "" ? null : var.bucket_name
  bucket_prefix = var.bucket_name == "" ? "${var.name}-platform-" : null
  force_destroy = var.bucket_force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "platform" {
  bucket = aws_s3_bucket.platform.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "platform" {
  bucket = aws_s3_bucket.platform.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "platform" {
  count = var.bucket_versioning ? 1 : 0

  bucket = aws_s3_bucket.platform.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Uploads of large objects go in parts: drop the parts of uploads that never completed.
resource "aws_s3_bucket_lifecycle_configuration" "platform" {
  bucket = aws_s3_bucket.platform.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "platform_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.platform.arn, "${aws_s3_bucket.platform.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "platform" {
  bucket = aws_s3_bucket.platform.id
  policy = data.aws_iam_policy_document.platform_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.platform]
}

locals {
  bucket_url = "s3://${aws_s3_bucket.platform.id}?region=${local.region}"
}
