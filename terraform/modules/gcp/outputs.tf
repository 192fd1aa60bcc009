output "url" {
  description = "URL of the control plane (API, portal, MWAA-compatible API) through its Ingress, assuming TLS is terminated there; null without a hostname (use kubectl port-forward)."
  value       = var.hostname != "" ? "https://${var.hostname}" : null
}

output "admin_token" {
  description = "The platform admin token."
  value       = random_password.admin_token.result
  sensitive   = true
}

output "master_key" {
  description = "The key that encrypts the environments' secrets: back it up (lost key = lost environments)."
  value       = random_id.master_key.b64_std
  sensitive   = true
}

output "namespace" {
  description = "Namespace of the control plane and the agent."
  value       = helm_release.hangar.namespace
}

output "cell_name" {
  description = "Name of this cluster's cell (the control plane creates it at start-up)."
  value       = var.cell_name
}

output "cell_token" {
  description = "The token of this cluster's cell, as the control plane and the agent have it; only needed to run another agent for the same cell."
  value       = "hgc_${random_password.cell_token.result}"
  sensitive   = true
}

output "cluster_name" {
  description = "Name of the GKE cluster."
  value       = google_container_cluster.this.name
}

output "cluster_location" {
  description = "Location (region or zone) of the GKE cluster."
  value       = google_container_cluster.this.location
}

output "cluster_endpoint" {
  description = "IP of the cluster's Kubernetes API (the Helm provider connects to https://{endpoint})."
  value       = google_container_cluster.this.endpoint
}

output "cluster_ca_certificate" {
  description = "Base64 CA certificate of the cluster's Kubernetes API."
  value       = google_container_cluster.this.master_auth[0].cluster_ca_certificate
}

output "bucket_name" {
  description = "Name of the platform bucket."
  value       = google_storage_bucket.platform.name
}

output "bucket_url" {
  description = "URL of the platform bucket as Hangar takes it (gs://…)."
  value       = local.bucket_url
}

output "database_instance_name" {
  description = "Name of the Cloud SQL instance."
  value       = google_sql_database_instance.this.name
}

output "database_private_ip" {
  description = "Private IP of the Cloud SQL instance."
  value       = google_sql_database_instance.this.private_ip_address
}

output "redis_host" {
  description = "Host of the Memorystore instance; null with redis_url."
  value       = local.create_redis ? google_redis_instance.this[0].host : null
}

output "redis_port" {
  description = "Port of the platform Redis."
  value       = local.redis_port
}

output "private_service_access_cidrs" {
  description = "Where Cloud SQL and Memorystore get their IPs (environments' pods may reach Postgres and Redis there)."
  value       = local.private_service_access_cidrs
}

output "control_plane_service_account" {
  description = "Email of the control plane's Google service account."
  value       = google_service_account.control_plane.email
}

output "agent_service_account" {
  description = "Email of the agent's Google service account."
  value       = google_service_account.agent.email
}
