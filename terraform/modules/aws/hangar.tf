# Hangar itself: the chart of this repository, wired to the cluster's node pools, RDS, Redis
# (ElastiCache or redis_url, behind the agent's broker gateway or not) and the platform bucket.

locals {
  hangar_values = {
    secrets = {
      databaseUrl         = local.database_url
      adminToken          = random_password.admin_token.result
      masterKey           = random_bytes.master_key.base64
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
      # The chart refuses an empty host: it is given only with a hostname.
      ingress = merge(
        {
          enabled       = var.hostname != ""
          className     = var.ingress_class_name
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
      kubeCell = {
        worker_node_selector = local.worker_labels
        worker_tolerations = [{
          key      = local.worker_taint.key
          operator = "Exists"
          effect   = "NoSchedule"
        }]
        postgres = { cidrs = [local.vpc_cidr], ports = [5432] }
        redis    = { cidrs = local.redis_egress_cidrs, ports = [local.redis_port] }
      }
    }
  }
}

resource "helm_release" "hangar" {
  name             = "hangar"
  chart            = local.chart_path
  namespace        = var.namespace
  create_namespace = true
  timeout          = 600

  values = [yamlencode(local.hangar_values)]

  # Pods get their AWS credentials only if their Pod Identity association exists when they
  # start; they run on the system nodes.
  depends_on = [
    aws_eks_node_group.system,
    aws_eks_addon.pod_identity_agent,
    aws_eks_pod_identity_association.hangar,
    aws_iam_role_policy.hangar,
  ]
}
