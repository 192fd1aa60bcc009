# Where it goes

variable "resource_group_name" {
  description = "An existing resource group: every Azure resource of the module is created in it."
  type        = string
}

variable "location" {
  description = "Azure region of every resource, e.g. westeurope."
  type        = string
}

variable "name" {
  description = "Prefix of the resources' names (AKS cluster, identities, Postgres and Redis servers, storage account, DNS zone). 3 to 16 lowercase letters, digits and hyphens."
  type        = string
  default     = "hangar"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name)) && length(regexall("--", var.name)) == 0
    error_message = "name: 3 to 16 characters, lowercase letters, digits and single hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags for every Azure resource that takes them."
  type        = map(string)
  default     = {}
}

# The network (existing)

variable "vnet_id" {
  description = "ID of the existing virtual network holding the subnets below; the module links its private DNS zones to it."
  type        = string
}

variable "vnet_cidr" {
  description = "Address range of that virtual network (e.g. 10.20.0.0/16): the default of redis_cidrs."
  type        = string
}

variable "vnet_subnet_id" {
  description = "ID of the subnet of the AKS nodes. With Azure CNI (not overlay) pods take their addresses from it too: size it for (system_max_count + workers_max_count + surge) x 31 addresses."
  type        = string
}

variable "postgres_subnet_id" {
  description = "ID of a subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers, with nothing else in it."
  type        = string
}

variable "postgres_subnet_cidr" {
  description = "Address range of postgres_subnet_id: the only addresses environments' pods may reach on port 5432."
  type        = string
}

variable "private_endpoint_subnet_id" {
  description = "Subnet of the Azure Cache for Redis private endpoint; null: vnet_subnet_id. Unused when redis_url is set."
  type        = string
  default     = null
}

# AKS

variable "kubernetes_version" {
  description = "Kubernetes version of the cluster and its node pools (e.g. \"1.33\"); null: the latest AKS recommends at creation."
  type        = string
  default     = null
}

variable "network_policy" {
  description = "Network policy engine that enforces the NetworkPolicies Hangar gives each environment: azure or calico."
  type        = string
  default     = "azure"

  validation {
    condition     = contains(["azure", "calico"], var.network_policy)
    error_message = "network_policy: azure or calico."
  }
}

variable "service_cidr" {
  description = "Range of the cluster's Service addresses; must not overlap the virtual network or anything connected to it."
  type        = string
  default     = "172.20.0.0/16"
}

variable "dns_service_ip" {
  description = "Address of the cluster DNS, inside service_cidr."
  type        = string
  default     = "172.20.0.10"
}

variable "system_vm_size" {
  description = "VM size of the system pool (AKS add-ons, Hangar's control plane and agent, environments' schedulers, API servers and triggerers)."
  type        = string
  default     = "Standard_D4s_v5"
}

variable "system_min_count" {
  description = "Fewest nodes of the system pool (autoscaled)."
  type        = number
  default     = 2
}

variable "system_max_count" {
  description = "Most nodes of the system pool."
  type        = number
  default     = 5
}

variable "workers_vm_size" {
  description = "VM size of the workers pool, where environments' Celery workers and task pods run."
  type        = string
  default     = "Standard_D4s_v5"
}

variable "workers_min_count" {
  description = "Fewest nodes of the workers pool (autoscaled; 0 lets it scale to zero)."
  type        = number
  default     = 0
}

variable "workers_max_count" {
  description = "Most nodes of the workers pool."
  type        = number
  default     = 10
}

# PostgreSQL Flexible Server

variable "postgres_sku_name" {
  description = "SKU of the PostgreSQL Flexible Server (tier + size)."
  type        = string
  default     = "GP_Standard_D2s_v3"
}

variable "postgres_storage_mb" {
  description = "Storage of the PostgreSQL Flexible Server in MB (32768, 65536, 131072, ...)."
  type        = number
  default     = 32768
}

variable "postgres_backup_retention_days" {
  description = "Days of backups the server keeps (7 to 35)."
  type        = number
  default     = 7

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days: between 7 and 35."
  }
}

variable "postgres_geo_redundant_backup" {
  description = "Keep the backups in the paired region too (cannot be changed after creation)."
  type        = bool
  default     = false
}

variable "postgres_tls" {
  description = "Require TLS to Postgres: the server's default (require_secure_transport), and sslmode=require in Hangar's URLs (encrypted; the server's certificate is not checked). false turns require_secure_transport off and drops sslmode, leaving Postgres traffic unencrypted: see README, \"TLS\"."
  type        = bool
  default     = true
}

# Redis

variable "redis_url" {
  description = "Bring your own Redis: the admin URL (redis://, or rediss:// for TLS; rediss://…#insecure does not check the server's certificate) of a Redis 7, not in cluster mode. Without the broker gateway (broker_gateway, false by default with redis_url), that user must be allowed ACL SETUSER, ACL DELUSER and ACL SAVE; with it, an admin login (AUTH) is enough. Empty: the module creates an Azure Cache for Redis, with the environments' brokers behind the agent's broker gateway (README)."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.redis_url == "" || can(regex("^rediss?://", var.redis_url))
    error_message = "redis_url: empty, or a redis:// or rediss:// URL."
  }
}

variable "broker_gateway" {
  description = "Put the environments' brokers behind the agent's broker gateway (needed for a Redis without ACL commands). null: true when the module creates the managed Redis, false when redis_url is given."
  type        = bool
  default     = null
  nullable    = true
}

variable "redis_sku_name" {
  description = "SKU of the Azure Cache for Redis: Standard (family C) or Premium (family P)."
  type        = string
  default     = "Standard"

  validation {
    condition     = contains(["Standard", "Premium"], var.redis_sku_name)
    error_message = "redis_sku_name: Standard or Premium."
  }
}

variable "redis_capacity" {
  description = "Size of the Azure Cache for Redis: 0 to 6 for Standard, 1 to 5 for Premium."
  type        = number
  default     = 1
}

variable "redis_cidrs" {
  description = "Addresses environments' pods may reach Redis at, without the broker gateway; null: [vnet_cidr] (the private endpoint is in the virtual network). Set it when redis_url points elsewhere. Unused with the broker gateway (environments' pods then reach the agent, not Redis)."
  type        = list(string)
  default     = null
}

variable "redis_ports" {
  description = "Ports environments' pods may reach Redis on, without the broker gateway: 6380 is Azure Cache for Redis' TLS port; a Redis of your own usually listens on 6379. Unused with the broker gateway."
  type        = list(number)
  default     = [6380]
}

# Storage

variable "storage_replication_type" {
  description = "Replication of the platform bucket's storage account: LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS."
  type        = string
  default     = "LRS"
}

variable "storage_shared_access_key_enabled" {
  description = "Allow the storage account's access keys. Hangar uses workload identity (and user-delegation SAS for upload URLs), so keys stay off; the azurerm provider then needs storage_use_azuread or data_plane_available = false (README)."
  type        = bool
  default     = false
}

# Hangar

variable "namespace" {
  description = "Namespace of Hangar's control plane and agent (created by the release)."
  type        = string
  default     = "hangar-system"
}

variable "chart_path" {
  description = "Path of Hangar's Helm chart; null: charts/hangar of this repository (path.module/../../../charts/hangar)."
  type        = string
  default     = null
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
  description = "Host name of the API and portal (e.g. hangar.example.com). Empty: no Ingress (reach it with kubectl port-forward)."
  type        = string
  default     = ""
}

variable "ingress_class_name" {
  description = "IngressClass of the Ingress (e.g. webapprouting.kubernetes.azure.com, nginx); empty: the cluster's default class."
  type        = string
  default     = ""
}

variable "tls_secret_name" {
  description = "TLS Secret in the namespace for hostname (and *.ui_domain); empty: no tls section on the Ingress."
  type        = string
  default     = ""
}

variable "ui_domain" {
  description = "Domain under which each environment's Airflow UI gets an origin of its own ({env}--{tenant}.<ui_domain>, wildcard DNS and certificate). Empty: the UIs share the API's origin."
  type        = string
  default     = ""
}

variable "cell_name" {
  description = "Name of this cluster's cell."
  type        = string
  default     = "aks"
}

variable "worker_slots" {
  description = "Task slots of the shared worker pool; 0: counted from the worker nodes that exist (at least 1), so a pool at 0 nodes grows one pending worker at a time. Set it to what workers_max_count nodes hold to let the cluster autoscaler scale out on demand."
  type        = number
  default     = 0
}
