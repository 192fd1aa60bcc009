# GKE Standard: Dataplane V2 (which enforces the NetworkPolicies that isolate environments),
# Workload Identity, and two node pools: "system" (Hangar, environments' schedulers and web
# servers, add-ons) and "workers" (environments' workers and task pods, tainted, autoscaled).

# The nodes' own identity: logs and metrics only, instead of the Compute Engine default
# service account (often an Editor of the project). Pods use Workload Identity (iam.tf).
resource "google_service_account" "nodes" {
  project      = var.project
  account_id   = "${var.name}-nodes"
  display_name = "Hangar GKE nodes"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
  ])

  project = var.project
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_container_cluster" "this" {
  project  = var.project
  name     = var.name
  location = local.location

  network         = local.network_id
  subnetwork      = local.subnetwork_id
  networking_mode = "VPC_NATIVE"

  ip_allocation_policy {
    cluster_secondary_range_name  = var.pods_range_name
    services_secondary_range_name = var.services_range_name
  }

  # The node pools are managed below; GKE still needs one node to create the cluster.
  remove_default_node_pool = true
  initial_node_count       = 1

  # Dataplane V2 (Cilium) enforces NetworkPolicies itself: no network_policy block with it.
  datapath_provider = "ADVANCED_DATAPATH"

  release_channel {
    channel = var.release_channel
  }

  workload_identity_config {
    workload_pool = "${var.project}.svc.id.goog"
  }

  dynamic "private_cluster_config" {
    for_each = var.private_nodes ? [1] : []
    content {
      enable_private_nodes    = true
      enable_private_endpoint = false
      master_ipv4_cidr_block  = var.master_ipv4_cidr_block
    }
  }

  dynamic "master_authorized_networks_config" {
    for_each = length(var.master_authorized_networks) > 0 ? [1] : []
    content {
      dynamic "cidr_blocks" {
        for_each = var.master_authorized_networks
        content {
          cidr_block   = cidr_blocks.value.cidr_block
          display_name = cidr_blocks.value.display_name
        }
      }
    }
  }

  resource_labels     = var.labels
  deletion_protection = var.deletion_protection

  lifecycle {
    precondition {
      condition     = var.regional || var.zone != ""
      error_message = "zone is required when regional is false."
    }
  }
}

resource "google_container_node_pool" "system" {
  project  = var.project
  name     = "system"
  location = local.location
  cluster  = google_container_cluster.this.name

  node_count = var.system_node_count

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.system_machine_type
    disk_size_gb    = var.node_disk_size_gb
    disk_type       = "pd-balanced"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = local.system_labels

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

resource "google_container_node_pool" "workers" {
  project  = var.project
  name     = "workers"
  location = local.location
  cluster  = google_container_cluster.this.name

  # Per zone; the cluster autoscaler adds nodes when workers or task pods are pending. With a
  # minimum of 0 the pool starts empty.
  autoscaling {
    min_node_count = var.worker_min_nodes
    max_node_count = var.worker_max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.worker_machine_type
    disk_size_gb    = var.node_disk_size_gb
    disk_type       = "pd-balanced"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = local.worker_labels

    # Only pods that tolerate it run here: the environments' workers and task pods.
    taint {
      key    = local.worker_taint.key
      value  = local.worker_taint.value
      effect = "NO_SCHEDULE"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}
