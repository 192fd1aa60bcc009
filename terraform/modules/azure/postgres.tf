# PostgreSQL 15: the control plane's database "hangar", and the server on which the agent creates
# each environment's role and database (as the admin, a member of azure_pg_admin with CREATEDB and
# CREATEROLE). Reached only from the virtual network.

# A zone of the server's own: VNet-integrated servers want a zone ending in
# .postgres.database.azure.com (privatelink.postgres.database.azure.com is Private Link's).
resource "azurerm_private_dns_zone" "postgres" {
  name                = "${var.name}-${local.suffix}.private.postgres.database.azure.com"
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "postgres" {
  name                  = "${var.name}-postgres"
  resource_group_name   = var.resource_group_name
  private_dns_zone_name = azurerm_private_dns_zone.postgres.name
  virtual_network_id    = var.vnet_id
  tags                  = var.tags
}

resource "azurerm_postgresql_flexible_server" "this" {
  name                          = "${var.name}-pg-${local.suffix}"
  resource_group_name           = var.resource_group_name
  location                      = var.location
  version                       = "15"
  sku_name                      = var.postgres_sku_name
  storage_mb                    = var.postgres_storage_mb
  backup_retention_days         = var.postgres_backup_retention_days
  geo_redundant_backup_enabled  = var.postgres_geo_redundant_backup
  delegated_subnet_id           = var.postgres_subnet_id
  private_dns_zone_id           = azurerm_private_dns_zone.postgres.id
  public_network_access_enabled = false
  administrator_login           = "hangaradmin"
  administrator_password        = random_password.postgres.result

  tags = var.tags

  depends_on = [azurerm_private_dns_zone_virtual_network_link.postgres]

  lifecycle {
    # Azure picks a zone when none is given; do not move the server back after a fail-over.
    ignore_changes = [zone]
  }
}

resource "azurerm_postgresql_flexible_server_database" "hangar" {
  name      = "hangar"
  server_id = azurerm_postgresql_flexible_server.this.id
}

# Only with postgres_tls = false: the server then accepts unencrypted connections (README, "TLS").
resource "azurerm_postgresql_flexible_server_configuration" "require_secure_transport" {
  count     = var.postgres_tls ? 0 : 1
  name      = "require_secure_transport"
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = "off"
}

locals {
  postgres_server = "hangaradmin:${urlencode(random_password.postgres.result)}@${azurerm_postgresql_flexible_server.this.fqdn}:5432"
  postgres_query  = var.postgres_tls ? "?sslmode=require" : ""
  database_url    = "postgres://${local.postgres_server}/${azurerm_postgresql_flexible_server_database.hangar.name}${local.postgres_query}"
  # The admin on the maintenance database: where the agent creates environments' databases.
  platform_postgres_url = "postgres://${local.postgres_server}/postgres${local.postgres_query}"
}
