# The Redis that brokers the environments' Celery tasks: Memorystore for Redis 7, unless
# redis_url names a Redis of the caller's.
#
# Memorystore for Redis does not accept the ACL commands (ACL SETUSER, ACL SAVE) that would give
# each environment a Redis user of its own, so the environments' brokers go through the agent's
# broker gateway (broker_gateway): each environment logs in to the gateway as its own user, and
# the gateway alone holds the AUTH string. See README, "Redis and the broker gateway".

locals {
  # redis_url is sensitive; whether it is set is not (and count cannot depend on a secret).
  create_redis = nonsensitive(var.redis_url == "")

  # The chart's agent.brokerGateway: by default on for Memorystore, off for a redis_url (whose
  # Redis may have ACL users).
  broker_gateway = var.broker_gateway != null ? var.broker_gateway : local.create_redis
}

resource "google_redis_instance" "this" {
  count = local.create_redis ? 1 : 0

  project        = var.project
  region         = var.region
  name           = "${var.name}-redis"
  tier           = var.redis_tier
  memory_size_gb = var.redis_memory_size_gb
  redis_version  = "REDIS_7_0"
  labels         = var.labels

  authorized_network = local.network_id
  connect_mode       = "PRIVATE_SERVICE_ACCESS"
  reserved_ip_range  = local.private_service_access_range

  auth_enabled            = true
  transit_encryption_mode = var.redis_transit_encryption ? "SERVER_AUTHENTICATION" : "DISABLED"

  depends_on = [google_service_networking_connection.private_service_access]
}

locals {
  redis_port = (
    local.create_redis
    ? google_redis_instance.this[0].port
    : nonsensitive(tonumber(try(regex("^rediss?://(?:[^@/]*@)?[^:/?]+:([0-9]+)", var.redis_url)[0], "6379")))
  )

  # With in-transit encryption, Memorystore's certificate is signed by a CA of the instance's own
  # (server_ca_certs), not a public one, and Hangar cannot be given a CA for Redis yet: "#insecure"
  # has Hangar (the agent and its broker gateway) encrypt the connection without checking the
  # server's certificate, so the server is not authenticated. A redis_url of the caller's is used
  # as given.
  platform_redis_url = (
    local.create_redis
    ? format(
      "%s://default:%s@%s:%d%s",
      var.redis_transit_encryption ? "rediss" : "redis",
      urlencode(google_redis_instance.this[0].auth_string),
      google_redis_instance.this[0].host,
      google_redis_instance.this[0].port,
      var.redis_transit_encryption ? "#insecure" : "",
    )
    : var.redis_url
  )

  # Where environments' pods may reach Redis (their NetworkPolicies), without the broker gateway.
  redis_egress_cidrs = length(var.redis_egress_cidrs) > 0 ? var.redis_egress_cidrs : local.private_service_access_cidrs
}
