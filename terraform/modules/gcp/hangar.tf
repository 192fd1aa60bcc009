# Hangar itself: the chart of this repository, wired to the node pools, Cloud SQL, Redis, the
# platform bucket and the Workload Identity service accounts. The caller configures the Helm
# provider (README).

resource "random_password" "admin_token" {
  length  = 40
  special = false
}

# Encrypts the environments' secrets: lost key = lost environments (back it up: output
# master_key).
resource "random_id" "master_key" {
  byte_length = 32
}

# The token of this cluster's cell: the control plane creates the cell `cell_name` with it at
# start-up, and the agent connects with it. The chart wants hgc_ and 32+ letters and digits.
resource "random_password" "cell_token" {
  length  = 40
  special = false
}

locals {
  worker_tolerations = [{
    key      = local.worker_taint.key
    operator = "Exists"
    effect   = "NoSchedule"
  }]

  hangar_values = {
    secrets = {
      databaseUrl         = local.database_url
      adminToken          = random_password.admin_token.result
      masterKey           = random_id.master_key.b64_std
      platformPostgresUrl = local.platform_postgres_url
      platformRedisUrl    = local.platform_redis_url
      cellToken           = "hgc_${random_password.cell_token.result}"
    }

    bucketUrl = local.bucket_url

    image = {
      repository = var.hangar_image_repository
      tag        = var.hangar_image_tag
    }

    controlPlane = {
      uiDomain     = var.ui_domain
      nodeSelector = local.system_labels
      serviceAccount = {
        annotations = { "iam.gke.io/gcp-service-account" = google_service_account.control_plane.email }
      }
      # The chart refuses an empty host: it is given only with a hostname.
      ingress = merge(
        {
          enabled       = var.hostname != ""
          className     = var.ingress_class_name
          annotations   = var.ingress_annotations
          tlsSecretName = var.tls_secret_name
        },
        var.hostname == "" ? {} : { host = var.hostname },
      )
    }

    agent = {
      enabled       = true
      cell          = var.cell_name
      nodeSelector  = local.system_labels
      brokerGateway = local.broker_gateway
      serviceAccount = {
        annotations = { "iam.gke.io/gcp-service-account" = google_service_account.agent.email }
      }
      kubeCell = {
        worker_node_selector = local.worker_labels
        worker_tolerations   = local.worker_tolerations
        postgres             = { cidrs = local.private_service_access_cidrs, ports = [5432] }
        redis                = { cidrs = local.redis_egress_cidrs, ports = [local.redis_port] }
      }
    }
  }
}

resource "helm_release" "hangar" {
  name             = "hangar"
  chart            = local.chart_path
  namespace        = var.namespace
  create_namespace = true
  timeout          = var.helm_timeout
  max_history      = 10

  values = concat([yamlencode(local.hangar_values)], var.helm_values)

  # The migrations Job runs before the release's pods, on the system nodes, against the
  # database; pods get their Google identity only if its binding exists when they start.
  depends_on = [
    google_container_node_pool.system,
    google_container_node_pool.workers,
    google_sql_database.hangar,
    google_sql_user.hangar,
    google_storage_bucket_iam_member.hangar,
    google_service_account_iam_member.control_plane_sign,
    google_service_account_iam_member.workload_identity,
  ]

  lifecycle {
    precondition {
      condition     = length(local.private_service_access_cidrs) > 0
      error_message = "existing_private_service_access_cidrs is required when create_private_service_access is false."
    }
  }
}
