# Names, generated secrets and the values shared by the other files.

resource "random_string" "suffix" {
  # Storage account, Postgres and Redis names are global: a suffix keeps them unique.
  length  = 6
  special = false
  upper   = false
}

resource "random_password" "postgres" {
  # Letters and digits only (three character classes, as Azure requires): safe in a URL.
  length      = 32
  special     = false
  min_upper   = 1
  min_lower   = 1
  min_numeric = 1
}

resource "random_password" "admin_token" {
  length  = 40
  special = false
}

# The token of this cluster's cell: the control plane creates the cell `cell_name` with it at
# start-up, and the agent connects with it. The chart wants hgc_ and 32+ letters and digits.
resource "random_password" "cell_token" {
  length  = 40
  special = false
}

resource "random_id" "master_key" {
  # 32 random bytes; b64_std is the 44-character base64 the chart expects. Lost key = lost
  # environments' secrets: keep the state (or the master_key output) safe.
  byte_length = 32
}

locals {
  suffix = random_string.suffix.result

  # The release's name is the chart's name, so the control plane's ServiceAccount is "hangar";
  # the agent's is always "hangar-agent". The federated credentials name both.
  release_name = "hangar"
  service_accounts = {
    control-plane = local.release_name
    agent         = "hangar-agent"
  }

  chart_path = coalesce(var.chart_path, "${path.module}/../../../charts/hangar")

  # `nonsensitive`: whether a secret is empty is not a secret, and count cannot take a sensitive value.
  create_redis = nonsensitive(var.redis_url == "")

  # The chart's agent.brokerGateway: by default on for Azure Cache for Redis, which has no ACL
  # commands, off for a redis_url (whose Redis may have ACL users).
  broker_gateway = var.broker_gateway != null ? var.broker_gateway : local.create_redis
}
