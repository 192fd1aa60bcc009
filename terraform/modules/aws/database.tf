# RDS PostgreSQL: the control plane's database ("hangar") and, through the master user, the
# environments' Airflow metadata databases, which the agent creates.

resource "random_password" "db" {
  length  = 32
  special = false # RDS refuses /, @, " and spaces; letters and digits need no URL escaping
}

resource "aws_db_subnet_group" "this" {
  name       = "${var.name}-postgres"
  subnet_ids = var.private_subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "db" {
  name        = "${var.name}-postgres"
  description = "Hangar PostgreSQL: 5432 from the EKS cluster's nodes and pods"
  vpc_id      = var.vpc_id

  # Managed node groups without a launch template carry the cluster security group only, and
  # pods use their node's network interfaces.
  ingress {
    description     = "PostgreSQL from the EKS cluster"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [aws_eks_cluster.this.vpc_config[0].cluster_security_group_id]
  }

  tags = merge(var.tags, { Name = "${var.name}-postgres" })
}

resource "aws_db_instance" "this" {
  identifier     = "${var.name}-postgres"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  db_name  = "hangar" # the control plane's database
  username = var.db_username
  password = random_password.db.result
  port     = 5432

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  backup_retention_period    = var.db_backup_retention_days
  copy_tags_to_snapshot      = true
  deletion_protection        = var.deletion_protection
  skip_final_snapshot        = var.db_skip_final_snapshot
  final_snapshot_identifier  = "${var.name}-postgres-final"
  auto_minor_version_upgrade = true

  tags = var.tags
}

locals {
  db_credentials = "${aws_db_instance.this.username}:${urlencode(random_password.db.result)}"
  db_address     = "${aws_db_instance.this.address}:${aws_db_instance.this.port}"

  # The control plane's database.
  database_url = "postgres://${local.db_credentials}@${local.db_address}/hangar?sslmode=require"
  # The master user on the maintenance database: the agent creates the environments' roles and
  # databases with it.
  platform_postgres_url = "postgres://${local.db_credentials}@${local.db_address}/postgres?sslmode=require"
}
