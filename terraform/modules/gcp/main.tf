# Names and addresses shared by the other files, and the Private Service Access connection
# through which Cloud SQL and Memorystore get private IPs in the caller's network.

locals {
  network_project = coalesce(var.network_project, var.project)
  location        = var.regional ? var.region : var.zone

  # Every API here accepts a network or subnetwork by id (projects/…); names are turned into
  # ids in the network's project (the host project of a Shared VPC), self links are trimmed.
  network_id = (
    can(regex("/", var.network))
    ? trimprefix(var.network, "https://www.googleapis.com/compute/v1/")
    : "projects/${local.network_project}/global/networks/${var.network}"
  )
  subnetwork_id = (
    can(regex("/", var.subnetwork))
    ? trimprefix(var.subnetwork, "https://www.googleapis.com/compute/v1/")
    : "projects/${local.network_project}/regions/${var.region}/subnetworks/${var.subnetwork}"
  )

  chart_path = coalesce(var.chart_path, "${path.module}/../../../charts/hangar")

  # Node labels and taint of the pools (gke.tf), which the chart's values name (hangar.tf).
  system_labels = { "node-pool" = "system" }
  worker_labels = { "node-pool" = "workers" }
  worker_taint  = { key = "hangar.dev/workers", value = "true" }

  # Where Cloud SQL and Memorystore get their IPs: environments' pods may reach Postgres and
  # Redis there only (their NetworkPolicies).
  private_service_access_cidrs = (
    var.create_private_service_access
    ? ["${google_compute_global_address.private_service_access[0].address}/${google_compute_global_address.private_service_access[0].prefix_length}"]
    : var.existing_private_service_access_cidrs
  )
  # The reserved range by name: Cloud SQL and Memorystore are pinned to it, so that their IPs
  # are in the CIDR above even when the network has other Private Service Access ranges.
  private_service_access_range = (
    var.create_private_service_access ? google_compute_global_address.private_service_access[0].name : null
  )
}

# Short random suffix of the names that Google keeps reserved for a while after deletion
# (Cloud SQL instances) or that are global (buckets).
resource "random_id" "suffix" {
  byte_length = 2
}

resource "google_compute_global_address" "private_service_access" {
  count = var.create_private_service_access ? 1 : 0

  project       = local.network_project
  name          = "${var.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  network       = local.network_id
  address       = var.private_service_access_cidr == "" ? null : split("/", var.private_service_access_cidr)[0]
  prefix_length = var.private_service_access_cidr == "" ? 16 : tonumber(split("/", var.private_service_access_cidr)[1])
}

resource "google_service_networking_connection" "private_service_access" {
  count = var.create_private_service_access ? 1 : 0

  network                 = local.network_id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_service_access[0].name]
}
