# Workload Identity: the control plane's and the agent's Kubernetes service accounts (named by
# the chart "hangar" and "hangar-agent") act as two Google service accounts. No keys.

locals {
  workload_pool = "${var.project}.svc.id.goog"

  # Kubernetes service account => Google service account.
  hangar_identities = {
    "hangar"       = google_service_account.control_plane
    "hangar-agent" = google_service_account.agent
  }
}

resource "google_service_account" "control_plane" {
  project      = var.project
  account_id   = "${var.name}-cp"
  display_name = "Hangar control plane"
}

resource "google_service_account" "agent" {
  project      = var.project
  account_id   = "${var.name}-agent"
  display_name = "Hangar agent"
}

resource "google_storage_bucket_iam_member" "hangar" {
  for_each = local.hangar_identities

  bucket = google_storage_bucket.platform.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${each.value.email}"
}

# The control plane signs upload URLs: without a key, through the IAM signBlob API on its own
# service account.
resource "google_service_account_iam_member" "control_plane_sign" {
  service_account_id = google_service_account.control_plane.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.control_plane.email}"
}

resource "google_service_account_iam_member" "workload_identity" {
  for_each = local.hangar_identities

  service_account_id = each.value.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${local.workload_pool}[${var.namespace}/${each.key}]"

  # The workload identity pool exists once a cluster of the project uses it.
  depends_on = [google_container_cluster.this]
}
