# --- Project and location -------------------------------------------------------------------

variable "project" {
  description = "ID of the Google Cloud project Hangar is installed in."
  type        = string
}

variable "region" {
  description = "Region of the cluster (when regional), Cloud SQL, Memorystore and the bucket (unless bucket_location is set)."
  type        = string
}

variable "regional" {
  description = "true: a regional GKE cluster (control plane and nodes in every zone of the region; node counts are per zone). false: a zonal cluster in `zone`."
  type        = bool
  default     = true
}

variable "zone" {
  description = "Zone of the cluster when `regional` is false (e.g. europe-west1-b). Ignored otherwise."
  type        = string
  default     = ""
}

variable "name" {
  description = "Name of the installation: prefix of the cluster, the service accounts, the Cloud SQL and Memorystore instances and the bucket."
  type        = string
  default     = "hangar"

  validation {
    # The service accounts are named "<name>-agent" and "<name>-nodes": at most 30 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{2,22}[a-z0-9]$", var.name))
    error_message = "name must be 4 to 24 lower-case letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "labels" {
  description = "Labels put on the cluster (and its nodes), Cloud SQL, Memorystore and the bucket."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the GKE cluster and the Cloud SQL instance from `terraform destroy` (set to false and apply before destroying)."
  type        = bool
  default     = true
}

# --- Network (created by the caller) ----------------------------------------------------------

variable "network" {
  description = "The VPC network: its name (in network_project), its id (projects/P/global/networks/N) or its self link."
  type        = string
}

variable "network_project" {
  description = "Project of the network when it is a Shared VPC host project; empty: `project`."
  type        = string
  default     = ""
}

variable "subnetwork" {
  description = "The subnetwork of the GKE nodes, in `region`: its name, id or self link."
  type        = string
}

variable "pods_range_name" {
  description = "Name of the subnetwork's secondary range for the pods."
  type        = string
}

variable "services_range_name" {
  description = "Name of the subnetwork's secondary range for the Services."
  type        = string
}

variable "create_private_service_access" {
  description = "Reserve an address range and create the Private Service Access connection (servicenetworking) through which Cloud SQL and Memorystore get private IPs. Set to false when the network already has one: creating a second connection replaces the ranges of the existing one."
  type        = bool
  default     = true
}

variable "private_service_access_cidr" {
  description = "With create_private_service_access: the range to reserve (e.g. 10.100.0.0/16); empty: Google picks a free /16."
  type        = string
  default     = ""

  validation {
    condition     = var.private_service_access_cidr == "" || can(cidrhost(var.private_service_access_cidr, 0))
    error_message = "private_service_access_cidr must be empty or a CIDR such as 10.100.0.0/16."
  }
}

variable "existing_private_service_access_cidrs" {
  description = "Without create_private_service_access: the CIDRs of the network's existing Private Service Access ranges (Cloud SQL and Memorystore get their IPs there). Required then: environments' NetworkPolicies allow Postgres (and, without the broker gateway, Redis) at these addresses only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.existing_private_service_access_cidrs : can(cidrhost(c, 0))])
    error_message = "existing_private_service_access_cidrs must be CIDRs such as 10.100.0.0/16."
  }
}

# --- GKE ----------------------------------------------------------------------------------------

variable "release_channel" {
  description = "GKE release channel of the cluster."
  type        = string
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE", "EXTENDED"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR, STABLE or EXTENDED."
  }
}

variable "private_nodes" {
  description = "Give the nodes private IPs only (the control plane endpoint stays public). They then reach ghcr.io, Docker Hub and PyPI only through a Cloud NAT on the network, which the caller provides."
  type        = bool
  default     = true
}

variable "master_ipv4_cidr_block" {
  description = "With private_nodes: the /28 of the GKE control plane; it must not overlap any range of the network."
  type        = string
  default     = "172.16.0.0/28"
}

variable "master_authorized_networks" {
  description = "CIDRs allowed to reach the cluster's public endpoint (Terraform's Helm provider among them); empty: no restriction."
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  default = []
}

variable "system_machine_type" {
  description = "Machine type of the system node pool (control plane, agent, environments' schedulers and web servers, cluster add-ons)."
  type        = string
  default     = "e2-standard-4"
}

variable "system_node_count" {
  description = "Nodes of the system pool, per zone of the cluster."
  type        = number
  default     = 1
}

variable "worker_machine_type" {
  description = "Machine type of the shared worker node pool (environments' Celery workers and task pods)."
  type        = string
  default     = "e2-standard-4"
}

variable "worker_min_nodes" {
  description = "Minimum nodes of the worker pool, per zone of the cluster (the cluster autoscaler scales between min and max)."
  type        = number
  default     = 0
}

variable "worker_max_nodes" {
  description = "Maximum nodes of the worker pool, per zone of the cluster."
  type        = number
  default     = 10
}

variable "node_disk_size_gb" {
  description = "Boot disk size of every node, in GB."
  type        = number
  default     = 100
}

# --- Cloud SQL for PostgreSQL -------------------------------------------------------------------

variable "database_tier" {
  description = "Machine tier of the Cloud SQL instance (Enterprise edition)."
  type        = string
  default     = "db-custom-2-7680"
}

variable "database_availability_type" {
  description = "REGIONAL: a standby in another zone with automatic failover. ZONAL: a single zone."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.database_availability_type)
    error_message = "database_availability_type must be REGIONAL or ZONAL."
  }
}

variable "database_disk_size_gb" {
  description = "Initial disk size of the Cloud SQL instance, in GB (it grows automatically)."
  type        = number
  default     = 20
}

variable "database_backup_retention" {
  description = "Number of daily backups Cloud SQL keeps."
  type        = number
  default     = 14
}

variable "database_flags" {
  description = "Cloud SQL database flags (e.g. { max_connections = \"400\" }: every environment's Airflow opens its own connections)."
  type        = map(string)
  default     = {}
}

variable "database_require_tls" {
  description = "Refuse unencrypted connections to Cloud SQL (ssl_mode ENCRYPTED_ONLY) and give Hangar URLs with sslmode=require (encrypted; the server's certificate is not checked). false: unencrypted connections are accepted too and the URLs carry no sslmode. See README, \"TLS\"."
  type        = bool
  default     = true
}

# --- Redis ----------------------------------------------------------------------------------------

variable "redis_url" {
  description = "Admin URL (redis://, or rediss:// for TLS; rediss://…#insecure does not check the server's certificate) of a Redis 7 you bring (not in cluster mode); when set, no Memorystore instance is created and the URL is used as given. Without the broker gateway (broker_gateway, false by default with redis_url), its user must be allowed ACL SETUSER, ACL DELUSER and ACL SAVE; with it, an admin login (AUTH) is enough. Empty: create Memorystore for Redis, with the environments' brokers behind the agent's broker gateway (see README)."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.redis_url == "" || can(regex("^rediss?://", var.redis_url))
    error_message = "redis_url must be empty or start with redis:// or rediss://."
  }
}

variable "broker_gateway" {
  description = "Put the environments' brokers behind the agent's broker gateway (needed for a Redis without ACL commands). null: true when the module creates the managed Redis, false when redis_url is given."
  type        = bool
  default     = null
  nullable    = true
}

variable "redis_egress_cidrs" {
  description = "With redis_url and without the broker gateway: the CIDRs where that Redis is, which environments' pods may reach; empty: the Private Service Access ranges. Unused with the broker gateway (environments' pods then reach the agent, not Redis)."
  type        = list(string)
  default     = []
}

variable "redis_tier" {
  description = "Memorystore tier: BASIC (one node) or STANDARD_HA (a replica with automatic failover)."
  type        = string
  default     = "STANDARD_HA"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis_tier)
    error_message = "redis_tier must be BASIC or STANDARD_HA."
  }
}

variable "redis_memory_size_gb" {
  description = "Memory of the Memorystore instance, in GB."
  type        = number
  default     = 1
}

variable "redis_transit_encryption" {
  description = "Memorystore with in-transit encryption (SERVER_AUTHENTICATION, TLS only, port 6378), which Hangar reaches with rediss://…#insecure: encrypted, but the server's certificate is not checked (its CA is the instance's own). Memorystore sets it only when the instance is created. See README, \"TLS\"."
  type        = bool
  default     = true
}

# --- Bucket ---------------------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the platform bucket; empty: {project}-{name}-{4 random hex digits}."
  type        = string
  default     = ""
}

variable "bucket_location" {
  description = "Location of the platform bucket; empty: the region."
  type        = string
  default     = ""
}

variable "bucket_versioning" {
  description = "Keep previous versions of the bucket's objects (deleted after bucket_noncurrent_days)."
  type        = bool
  default     = true
}

variable "bucket_noncurrent_days" {
  description = "With bucket_versioning: days after which a previous version is deleted."
  type        = number
  default     = 30
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete the bucket with its objects."
  type        = bool
  default     = false
}

# --- Hangar -----------------------------------------------------------------------------------------

variable "chart_path" {
  description = "Path of Hangar's Helm chart (or URL of a packaged chart); empty: the chart of this repository (charts/hangar)."
  type        = string
  default     = ""
}

variable "namespace" {
  description = "Kubernetes namespace of the control plane and the agent (created by the release)."
  type        = string
  default     = "hangar-system"
}

variable "hangar_image_repository" {
  description = "Repository of Hangar's image."
  type        = string
  default     = "ghcr.io/hangar-dev/hangar"
}

variable "hangar_image_tag" {
  description = "Tag of Hangar's image; empty: the chart's appVersion."
  type        = string
  default     = ""
}

variable "hostname" {
  description = "Host name of the control plane's Ingress (API, portal, MWAA-compatible API); empty: no Ingress (reach it with kubectl port-forward)."
  type        = string
  default     = ""
}

variable "ingress_class_name" {
  description = "IngressClass of the Ingress; empty: the cluster's default (on GKE, the built-in \"gce\" load balancer)."
  type        = string
  default     = ""
}

variable "ingress_annotations" {
  description = "Annotations of the Ingress (e.g. kubernetes.io/ingress.global-static-ip-name, networking.gke.io/managed-certificates)."
  type        = map(string)
  default     = {}
}

variable "tls_secret_name" {
  description = "A TLS Secret in `namespace` for the host (and *.ui_domain); empty: TLS is terminated elsewhere or not at all."
  type        = string
  default     = ""
}

variable "ui_domain" {
  description = "Domain of the environments' own UI origins ({env}--{tenant}.<ui_domain>, wildcard DNS and certificate), e.g. https://airflow.example.com; empty: UIs share the API's origin."
  type        = string
  default     = ""
}

variable "cell_name" {
  description = "Name of this cluster's cell."
  type        = string
  default     = "gke"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.cell_name))
    error_message = "cell_name must be a DNS label: lower-case letters, digits and hyphens."
  }
}

variable "helm_values" {
  description = "Further values files (YAML strings) for the chart, applied after the module's (e.g. agent.workerSlots, controlPlane.airflowVersions)."
  type        = list(string)
  default     = []
}

variable "helm_timeout" {
  description = "Seconds Helm waits for the release (the migrations Job and the pods) to be ready."
  type        = number
  default     = 600
}
