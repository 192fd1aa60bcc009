# ---------------------------------------------------------------------------------------------
# Naming and tags
# ---------------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of the names of the resources this module creates (RDS instance, Redis replication group, security groups, IAM roles, bucket prefix). Lowercase letters, digits and hyphens."
  type        = string
  default     = "hangar"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,23}$", var.name))
    error_message = "name must start with a lowercase letter and have at most 24 lowercase letters, digits or hyphens."
  }
}

variable "tags" {
  description = "Tags added to every AWS resource the module creates."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Network (given, never created)
# ---------------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "The VPC to install Hangar in. The module creates no networking."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two, in different availability zones) for the EKS nodes, RDS and ElastiCache. They need outbound internet access (NAT) to pull images."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "Give at least two private subnets, in different availability zones."
  }
}

variable "public_subnet_ids" {
  description = "Optional public subnets, added to the EKS cluster's subnets (for internet-facing load balancers; tag them kubernetes.io/role/elb=1 yourself)."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------------------------
# EKS
# ---------------------------------------------------------------------------------------------

variable "cluster_name" {
  description = "Name of the EKS cluster."
  type        = string
  default     = "hangar"
}

variable "kubernetes_version" {
  description = "Kubernetes version of the EKS cluster (major.minor)."
  type        = string
  default     = "1.31"
}

variable "cluster_endpoint_public_access" {
  description = "Whether the cluster's API server is reachable from the internet (the private endpoint is always on). Terraform's helm provider must reach it."
  type        = bool
  default     = true
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public API endpoint."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "cluster_admin_principal_arns" {
  description = "IAM principals (users or roles) given cluster-admin through EKS access entries, besides the identity that runs Terraform (which gets it at creation)."
  type        = list(string)
  default     = []
}

variable "node_ami_type" {
  description = "AMI type of both node groups; must match the instance types' architecture."
  type        = string
  default     = "AL2023_x86_64_STANDARD"
}

variable "node_disk_size" {
  description = "Root volume size (GiB) of every node. Worker nodes pull Airflow images."
  type        = number
  default     = 50
}

variable "system_instance_types" {
  description = "Instance types of the system node group (control plane, agent, cluster add-ons)."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "system_node_count" {
  description = "Number of nodes of the system node group (fixed size)."
  type        = number
  default     = 2
}

variable "worker_instance_types" {
  description = "Instance types of the shared worker node group (environments' workers and task pods)."
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "worker_min_size" {
  description = "Minimum number of worker nodes. Keep at least 1: the agent counts the worker pool's task slots from the worker nodes."
  type        = number
  default     = 1
}

variable "worker_max_size" {
  description = "Maximum number of worker nodes the cluster autoscaler may scale to."
  type        = number
  default     = 10
}

variable "install_cluster_autoscaler" {
  description = "Install the Kubernetes cluster autoscaler (Helm chart from https://kubernetes.github.io/autoscaler, IAM role through EKS Pod Identity)."
  type        = bool
  default     = true
}

variable "cluster_autoscaler_chart_version" {
  description = "Version of the cluster-autoscaler Helm chart. Its app version should match the Kubernetes minor version (or set cluster_autoscaler_image_tag)."
  type        = string
  default     = "9.43.2"
}

variable "cluster_autoscaler_image_tag" {
  description = "Image tag of the cluster autoscaler (e.g. v1.31.1); empty: the chart's app version."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------------------------------------
# RDS PostgreSQL
# ---------------------------------------------------------------------------------------------

variable "db_engine_version" {
  description = "PostgreSQL version of the RDS instance (a major version picks its default minor)."
  type        = string
  default     = "15"
}

variable "db_instance_class" {
  description = "Instance class of the RDS instance."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_allocated_storage" {
  description = "Initial storage of the RDS instance (GiB)."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling of the RDS instance (GiB); 0 disables storage autoscaling."
  type        = number
  default     = 200
}

variable "db_username" {
  description = "Master user of the RDS instance. Hangar's control plane uses it for its database, and the agent for the environments' databases."
  type        = string
  default     = "hangar"
}

variable "db_multi_az" {
  description = "Run the RDS instance Multi-AZ (a standby in another availability zone)."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated RDS backups kept (0 disables backups)."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Protect the RDS instance from deletion. Set to false (and apply) before destroying."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Delete the RDS instance without a final snapshot."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------

variable "redis_url" {
  description = "Admin URL (redis://, or rediss:// for TLS; rediss://…#insecure does not check the server's certificate) of a Redis 7 you bring (e.g. one you run on EC2 or in the cluster; not in cluster mode); when set, no ElastiCache is created and the URL is used as given. Without the broker gateway (broker_gateway, false by default with redis_url), its user must be allowed ACL SETUSER, ACL DELUSER and ACL SAVE; with it, an admin login (AUTH) is enough. Empty: create an ElastiCache for Redis OSS replication group, with the environments' brokers behind the agent's broker gateway (see README)."
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
  description = "With redis_url and without the broker gateway: the CIDRs where that Redis is, which environments' pods may reach; empty: the VPC's primary CIDR. Unused with the broker gateway (environments' pods then reach the agent, not Redis)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.redis_egress_cidrs : can(cidrhost(c, 0))])
    error_message = "redis_egress_cidrs must be CIDRs such as 10.0.0.0/16."
  }
}

variable "redis_engine_version" {
  description = "Redis OSS version of the ElastiCache replication group (major.minor). Unused with redis_url."
  type        = string
  default     = "7.1"
}

variable "redis_node_type" {
  description = "Node type of the ElastiCache replication group. Unused with redis_url."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_multi_az" {
  description = "Add a replica of the ElastiCache replication group in another availability zone, with automatic failover. Unused with redis_url."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the platform bucket; empty: a unique name starting with \"<name>-platform-\"."
  type        = string
  default     = ""
}

variable "bucket_versioning" {
  description = "Enable versioning on the platform bucket."
  type        = bool
  default     = true
}

variable "bucket_force_destroy" {
  description = "Let Terraform delete the platform bucket with its objects (DAGs, task logs)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Hangar
# ---------------------------------------------------------------------------------------------

variable "namespace" {
  description = "Kubernetes namespace of Hangar (created by the Helm release)."
  type        = string
  default     = "hangar-system"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be an RFC 1123 label."
  }
}

variable "chart_path" {
  description = "Path (or reference) of Hangar's Helm chart. Default (null): <this module>/../../../charts/hangar, the chart of this repository."
  type        = string
  default     = null
}

variable "hangar_image_repository" {
  description = "Hangar's image repository."
  type        = string
  default     = "ghcr.io/hangar-dev/hangar"
}

variable "hangar_image_tag" {
  description = "Hangar's image tag; empty: the chart's appVersion."
  type        = string
  default     = ""
}

variable "hostname" {
  description = "Public hostname of the control plane (API, portal, MWAA-compatible API). Empty: no Ingress (reach it with kubectl port-forward)."
  type        = string
  default     = ""

  validation {
    condition     = var.hostname == "" || can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", var.hostname))
    error_message = "hostname must be a lowercase DNS name (no scheme, no port)."
  }
}

variable "ingress_class_name" {
  description = "IngressClass of the control plane's Ingress (the ingress controller is not installed by this module)."
  type        = string
  default     = ""
}

variable "tls_secret_name" {
  description = "TLS Secret (in the namespace) for the hostname, and for *.<ui_domain> when set. Empty: no TLS section on the Ingress."
  type        = string
  default     = ""
}

variable "ui_domain" {
  description = "Domain under which each environment's Airflow UI gets its own origin ({env}--{tenant}.<ui_domain>; wildcard DNS and certificate needed). Empty: the UIs share the API's origin."
  type        = string
  default     = ""
}

variable "cell_name" {
  description = "Name of this cluster's cell."
  type        = string
  default     = "eks"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.cell_name))
    error_message = "cell_name must be an RFC 1123 label."
  }
}
