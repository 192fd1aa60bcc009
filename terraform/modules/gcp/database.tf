# Cloud SQL for PostgreSQL 15, private IP only: the control plane's database ("hangar") and,
# through the same user, the environments' Airflow metadata databases, which the agent creates
# (CREATE ROLE, CREATE DATABASE): see README, "Cloud SQL".

resource "random_password" "database" {
  length  = 32
  special = false # letters and digits: nothing to escape in a URL or in SQL
}

resource "google_sql_database_instance" "this" {
  project             = var.project
  region              = var.region
  name                = "${var.name}-pg-${random_id.suffix.hex}"
  database_version    = "POSTGRES_15"
  deletion_protection = var.deletion_protection

  settings {
    edition           = "ENTERPRISE" # the edition of db-custom-* tiers
    tier              = var.database_tier
    availability_type = var.database_availability_type
    disk_type         = "PD_SSD"
    disk_size         = var.database_disk_size_gb
    disk_autoresize   = true
    user_labels       = var.labels

    ip_configuration {
      ipv4_enabled       = false
      private_network    = local.network_id
      allocated_ip_range = local.private_service_access_range
      ssl_mode           = var.database_require_tls ? "ENCRYPTED_ONLY" : "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = var.database_backup_retention
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7 # Sunday
      hour         = 3
      update_track = "stable"
    }

    dynamic "database_flags" {
      for_each = var.database_flags
      content {
        name  = database_flags.key
        value = database_flags.value
      }
    }
  }

  depends_on = [google_service_networking_connection.private_service_access]
}

resource "google_sql_database" "hangar" {
  project  = var.project
  instance = google_sql_database_instance.this.name
  name     = "hangar"
}

# A built-in user: a member of cloudsqlsuperuser, with CREATEROLE and CREATEDB.
resource "google_sql_user" "hangar" {
  project  = var.project
  instance = google_sql_database_instance.this.name
  name     = "hangar"
  password = random_password.database.result

  # Postgres refuses to drop a role that still owns databases (the environments'): the user
  # goes with the instance instead.
  deletion_policy = "ABANDON"
}

locals {
  database_host  = google_sql_database_instance.this.private_ip_address
  database_login = "${google_sql_user.hangar.name}:${urlencode(random_password.database.result)}"
  # sslmode=require: encrypted, Cloud SQL's certificate not checked. Hangar then has the
  # environments' Airflow use sslmode=require too.
  database_query = var.database_require_tls ? "?sslmode=require" : ""

  # The control plane's database.
  database_url = "postgres://${local.database_login}@${local.database_host}:5432/${google_sql_database.hangar.name}${local.database_query}"
  # The same user on the maintenance database: the agent creates the environments' roles and
  # databases with it.
  platform_postgres_url = "postgres://${local.database_login}@${local.database_host}:5432/postgres${local.database_query}"
}
