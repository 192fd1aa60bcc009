# Azure Cache for Redis, reached through a private endpoint, unless redis_url brings a Redis of
# your own. It has no ACL commands: the environments' brokers go through the agent's broker
# gateway (broker_gateway), which alone holds the access key (README). TLS only (port 6380):
# Hangar connects with rediss:// and checks the cache's publicly issued certificate against
# Mozilla's public roots.

resource "azurerm_redis_cache" "this" {
  count               = local.create_redis ? 1 : 0
  name                = "${var.name}-redis-${local.suffix}"
  resource_group_name = var.resource_group_name
  location            = var.location
  sku_name            = var.redis_sku_name
  family              = var.redis_sku_name == "Premium" ? "P" : "C"
  capacity            = var.redis_capacity
  # 6 is the newest Azure Cache for Redis offers (Hangar targets Redis 7).
  redis_version                 = "6"
  non_ssl_port_enabled          = false
  minimum_tls_version           = "1.2"
  public_network_access_enabled = false

  tags = var.tags
}

resource "azurerm_private_dns_zone" "redis" {
  count               = local.create_redis ? 1 : 0
  name                = "privatelink.redis.cache.windows.net"
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "redis" {
  count                 = local.create_redis ? 1 : 0
  name                  = "${var.name}-redis"
  resource_group_name   = var.resource_group_name
  private_dns_zone_name = azurerm_private_dns_zone.redis[0].name
  virtual_network_id    = var.vnet_id
  tags                  = var.tags
}

resource "azurerm_private_endpoint" "redis" {
  count               = local.create_redis ? 1 : 0
  name                = "${var.name}-redis"
  resource_group_name = var.resource_group_name
  location            = var.location
  subnet_id           = coalesce(var.private_endpoint_subnet_id, var.vnet_subnet_id)

  private_service_connection {
    name                           = "${var.name}-redis"
    private_connection_resource_id = azurerm_redis_cache.this[0].id
    subresource_names              = ["redisCache"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "redis"
    private_dns_zone_ids = [azurerm_private_dns_zone.redis[0].id]
  }

  tags = var.tags
}

locals {
  # The access key is the password of Azure Cache's default user (base64: URL-encoded).
  redis_url = local.create_redis ? "rediss://:${urlencode(azurerm_redis_cache.this[0].primary_access_key)}@${azurerm_redis_cache.this[0].hostname}:${azurerm_redis_cache.this[0].ssl_port}" : var.redis_url
}
