# The platform bucket: DAGs, plugins, requirements and task logs of every environment. Reached
# with Entra ID tokens only (workload identity, identity.tf); upload URLs are user-delegation SAS.

resource "azurerm_storage_account" "this" {
  name                            = "${replace(var.name, "-", "")}${local.suffix}"
  resource_group_name             = var.resource_group_name
  location                        = var.location
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = var.storage_replication_type
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = var.storage_shared_access_key_enabled
  default_to_oauth_authentication = true

  tags = var.tags
}

resource "azurerm_storage_container" "hangar" {
  name = "hangar"
  # By ID: created through Azure Resource Manager, which needs no account key.
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}
