output "url" {
  description = "Hangar's URL (https://<hostname>), or empty without a hostname (then use kubectl port-forward)."
  value       = var.hostname == "" ? "" : "https://${var.hostname}"
}

output "admin_token" {
  description = "The platform admin token (HANGAR_TOKEN for `hangar cell create` and the admin API)."
  value       = random_password.admin_token.result
  sensitive   = true
}

output "namespace" {
  description = "Kubernetes namespace of Hangar."
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
  description = "Name of the EKS cluster."
  # The id (the name) is known only once the cluster exists: a caller's aws_eks_cluster_auth
  # then makes its short-lived token after the cluster is created, not at plan time.
  value = aws_eks_cluster.this.id
}

output "cluster_endpoint" {
  description = "Endpoint of the EKS cluster's API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA certificate of the EKS cluster (for the helm and kubernetes providers)."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_security_group_id" {
  description = "The EKS cluster security group (carried by every node)."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "bucket_name" {
  description = "Name of the platform bucket."
  value       = aws_s3_bucket.platform.id
}

output "database_endpoint" {
  description = "Address of the RDS PostgreSQL instance (port 5432)."
  value       = aws_db_instance.this.address
}

output "redis_endpoint" {
  description = "Primary endpoint address of the ElastiCache Redis replication group (port 6379, TLS); null with redis_url."
  value       = one(aws_elasticache_replication_group.this[*].primary_endpoint_address)
}

output "redis_port" {
  description = "Port of the platform Redis (the port of redis_url, 6379 when it has none)."
  value       = local.redis_port
}
