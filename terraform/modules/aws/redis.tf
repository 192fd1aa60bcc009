# ElastiCache Redis OSS: the environments' Celery brokers. TLS in transit, an AUTH token for the
# "default" user, which Hangar uses as the admin of the environments' Redis users.

resource "random_password" "redis" {
  length  = 48
  special = false # ElastiCache refuses @, " and / in AUTH tokens
}

resource "aws_elasticache_subnet_group" "this" {
  name       = "${var.name}-redis"
  subnet_ids = var.private_subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "redis" {
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

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result

  tags = var.tags
}

locals {
  platform_redis_url = "rediss://default:${urlencode(random_password.redis.result)}@${aws_elasticache_replication_group.this.primary_endpoint_address}:6379"
}
