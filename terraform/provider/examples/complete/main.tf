# A complete configuration: a tenant (platform admin), then, as that tenant, an environment with
# a DAG file, a token for CI and an access key for the MWAA-compatible API.
#
#   export HANGAR_URL=http://127.0.0.1:8080 HANGAR_TOKEN=<platform admin token>
#   terraform apply
#
# With a tenant token instead, drop hangar_tenant and set `tenant` to the tenant's name.

terraform {
  required_providers {
    hangar = {
      source = "hangar/hangar"
    }
  }
}

provider "hangar" {
  # url and token default to HANGAR_URL and HANGAR_TOKEN.
}

variable "tenant" {
  type    = string
  default = "data"
}

resource "hangar_tenant" "team" {
  name         = var.tenant
  display_name = "Data engineering"
}

resource "hangar_environment" "etl" {
  tenant                       = hangar_tenant.team.name
  name                         = "etl"
  environment_class            = "small"
  min_workers                  = 0
  max_workers                  = 5
  worker_weight                = 2
  hibernate_after_idle_minutes = 120
  schedulers                   = 1

  airflow_config_overrides = {
    "core.default_task_retries" = "2"
  }
  env_vars = {
    DATA_BUCKET = "s3://example-data"
  }
  requirements = file("${path.module}/requirements.txt")
  tags = {
    team = "data"
    cost = "analytics"
  }

  timeouts {
    create = "20m"
    update = "20m"
    delete = "10m"
  }
}

resource "hangar_dag" "daily" {
  tenant      = hangar_environment.etl.tenant
  environment = hangar_environment.etl.name
  path        = "daily.py"
  source      = "${path.module}/dags/daily.py"

  # A replaced environment starts with an empty DAG folder: write the file again.
  lifecycle {
    replace_triggered_by = [hangar_environment.etl.environment_id]
  }
}

resource "hangar_token" "ci" {
  tenant = hangar_tenant.team.name
  name   = "ci"
  role   = "editor"
}

resource "hangar_access_key" "mwaa" {
  tenant = hangar_tenant.team.name
  name   = "mwaa-cli"
  role   = "viewer"
}

data "hangar_environments" "all" {
  tenant     = hangar_tenant.team.name
  depends_on = [hangar_environment.etl]
}

output "airflow_ui" {
  value = hangar_environment.etl.webserver_url
}

output "dags_bucket" {
  value = hangar_environment.etl.dags_bucket_url
}

output "environments" {
  value = data.hangar_environments.all.names
}

output "ci_token" {
  value     = hangar_token.ci.value
  sensitive = true
}

output "mwaa_access_key_id" {
  value = hangar_access_key.mwaa.access_key_id
}
