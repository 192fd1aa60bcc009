# The Redis that brokers the environments' Celery tasks: ElastiCache for Redis OSS 7, unless
# redis_url names a Redis of the caller's. TLS in transit, an AUTH token for the "default" user,
# Hangar's admin login.
#
# ElastiCache manages its users through its own API (RBAC user groups) and refuses the ACL
# commands (ACL SETUSER, ACL SAVE) that would give each environment a Redis user of its own, so
# the environments' brokers go through the agent's broker gateway (broker_gateway): each
# environment logs in to the gateway as its own user, and the gateway alone holds the AUTH token.
# See README, "Redis and the broker gateway".

locals {
  # redis_url is sensitive; whether it is set is not (and count cannot depend on a secret).
  create_redis = nonsensitive(var.redis_url == "")

  # The chart's agent.brokerGateway: by default on for ElastiCache, off for a redis_url (whose
  # Redis may have ACL users).
  broker_gateway = var.broker_gateway != null ? var.broker_gateway : local.create_redis
}

resource "random_password" "redis" {
  count = local.create_redis ? 1 : 0

  length  = 48
  special = false # ElastiCache refuses @, " and / in AUTH tokens
}

resource "aws_elasticache_subnet_group" "this" {
  count = local.create_redis ? 1 : 0

  name       = "${var.name}-redis"
  subnet_ids = var.private_subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "redis" {
  count = local.create_redis ? 1 : 0

  name        = "${var.name}-redis"
  description = "Hangar Redis: 6379 from the EKS cluster's nodes and pods"
  vpc_id      = var.vpc_id

  ingress {
    description     = "Redis from the EKS cluster"
    from_port       = 6379
    to_port         = 6379
    protocol        = "tcp"
    security_groups = [aws_eks_cluster.this.vpc_config[0].cluster_security_group_id]
  }

  tags = merge(var.tags, { Name = "${var.name}-redis" })
}

resource "aws_elasticache_replication_group" "this" {
  count = local.create_redis ? 1 : 0

  replication_group_id = "${var.name}-redis"
  description          = "Hangar platform Redis"

  engine               = "redis"
  engine_version       = var.redis_engine_version
  parameter_group_name = "default.redis7"
  node_type            = var.redis_node_type
  port                 = 6379

  num_cache_clusters         = var.redis_multi_az ? 2 : 1
  automatic_failover_enabled = var.redis_multi_az
  multi_az_enabled           = var.redis_multi_az

  subnet_group_name  = aws_elasticache_subnet_group.this[0].name
  security_group_ids = [aws_security_group.redis[0].id]

  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = random_password.redis[0].result

  tags = var.tags
}

locals {
  # ElastiCache's certificate is publicly issued: Hangar checks it (no "#insecure"). A redis_url
  # of the caller's is used as given.
  platform_redis_url = (
    local.create_redis
    ? "rediss://default:${urlencode(random_password.redis[0].result)}@${aws_elasticache_replication_group.this[0].primary_endpoint_address}:6379"
    : var.redis_url
  )

  # Where environments' pods may reach Redis (their NetworkPolicies, without the broker gateway):
  # the port of redis_url (6379 when it has none), in redis_egress_cidrs or the VPC. nonsensitive
  # is applied to the port alone: before Terraform 1.7 it refuses a value that is not sensitive
  # (the fallback).
  redis_port = (
    local.create_redis
    ? 6379
    : try(tonumber(nonsensitive(regex("^rediss?://(?:[^@/]*@)?[^:/?#]+:([0-9]+)", var.redis_url)[0])), 6379)
  )
  redis_egress_cidrs = length(var.redis_egress_cidrs) > 0 ? var.redis_egress_cidrs : [local.vpc_cidr]
}
