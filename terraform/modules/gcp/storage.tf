# The platform bucket: environments' DAGs, plugins, requirements and task logs. Private (no
# ACLs, no public access), reachable only by Hangar's two service accounts (iam.tf).

resource "google_storage_bucket" "platform" {
  project  = var.project
  name     = var.bucket_name != "" ? var.bucket_name : "${var.project}-${var.name}-${random_id.suffix.hex}"
  location = var.bucket_location != "" ? var.bucket_location : upper(var.region)
  labels   = var.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.bucket_force_destroy

  versioning {
    enabled = var.bucket_versioning
  }

  dynamic "lifecycle_rule" {
    for_each = var.bucket_versioning ? [1] : []
    content {
      condition {
        days_since_noncurrent_time = var.bucket_noncurrent_days
      }
      action {
        type = "Delete"
      }
    }
  }
}

locals {
  bucket_url = "gs://${google_storage_bucket.platform.name}"
}
