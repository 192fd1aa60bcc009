output "url" {
  description = "URL of the API, the portal and the MWAA-compatible API (null without hostname: use kubectl port-forward, README)."
  value       = var.hostname != "" ? "https://${var.hostname}" : null
}

output "admin_token" {
  description = "The platform admin token (HANGAR_TOKEN for `hangar cell create` and the hangar/hangar provider)."
  value       = random_password.admin_token.result
  sensitive   = true
}

output "master_key" {
  description = "The key that encrypts environments' secrets: back it up, a lost key means lost environments."
  value       = random_id.master_key.b64_std
  sensitive   = true
}

output "cell_token" {
  description = "The token of this cluster's cell, as the control plane and the agent have it; only needed to run another agent for the same cell."
  value       = "hgc_${random_password.cell_token.result}"
  sensitive   = true
}

output "cluster_name" {
  description = "Name of the AKS cluster."
  value       = azurerm_kubernetes_cluster.this.name
}

output "kube_config" {
  description = "Credentials of the cluster (host and base64 certificates) for the caller's helm provider."
  value       = azurerm_kubernetes_cluster.this.kube_config[0]
  sensitive   = true
}

output "oidc_issuer_url" {
  description = "OIDC issuer of the cluster (what the federated identity credentials trust)."
  value       = azurerm_kubernetes_cluster.this.oidc_issuer_url
}

output "storage_account_name" {
  description = "Storage account of the platform bucket (container hangar)."
  value       = azurerm_storage_account.this.name
}

output "postgres_fqdn" {
  description = "Private FQDN of the PostgreSQL Flexible Server."
  value       = azurerm_postgresql_flexible_server.this.fqdn
}

output "redis_hostname" {
  description = "Host name of the Azure Cache for Redis (null when redis_url is set)."
  value       = local.create_redis ? azurerm_redis_cache.this[0].hostname : null
}

output "identity_client_ids" {
  description = "Client IDs of the control plane's and the agent's user-assigned identities."
  value       = local.identity_client_ids
}
