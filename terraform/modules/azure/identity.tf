# Workload identity: one user-assigned identity per ServiceAccount (control plane, agent),
# trusted for that ServiceAccount's tokens from the cluster's OIDC issuer, and allowed on the
# platform bucket. No keys anywhere.

resource "azurerm_user_assigned_identity" "this" {
  for_each            = local.service_accounts
  name                = "${var.name}-${each.key}"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "this" {
  for_each                  = local.service_accounts
  name                      = "${var.name}-${each.key}"
  user_assigned_identity_id = azurerm_user_assigned_identity.this[each.key].id
  issuer                    = azurerm_kubernetes_cluster.this.oidc_issuer_url
  subject                   = "system:serviceaccount:${var.namespace}:${each.value}"
  audience                  = ["api://AzureADTokenExchange"]
}

resource "azurerm_role_assignment" "blob_data" {
  for_each             = local.service_accounts
  scope                = azurerm_storage_account.this.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.this[each.key].principal_id
  principal_type       = "ServicePrincipal"
}

# The control plane signs DAG upload URLs with a user delegation key.
resource "azurerm_role_assignment" "blob_delegator" {
  scope                = azurerm_storage_account.this.id
  role_definition_name = "Storage Blob Delegator"
  principal_id         = azurerm_user_assigned_identity.this["control-plane"].principal_id
  principal_type       = "ServicePrincipal"
}
