# Hangar's chart, with the URLs and secrets of what the other files create. The helm provider is
# the caller's (README).

locals {
  identity_client_ids = { for k, v in azurerm_user_assigned_identity.this : k => v.client_id }

  # object_store's az:// URL names the container; the account comes from
  # AZURE_STORAGE_ACCOUNT_NAME. AZURE_CLIENT_ID is also what the workload identity webhook would
  # inject (it never overrides a variable that is set); it adds AZURE_TENANT_ID,
  # AZURE_FEDERATED_TOKEN_FILE and AZURE_AUTHORITY_HOST to pods labelled
  # azure.workload.identity/use=true.
  azure_env = {
    for k, id in local.identity_client_ids : k => [
      { name = "AZURE_STORAGE_ACCOUNT_NAME", value = azurerm_storage_account.this.name },
      { name = "AZURE_CLIENT_ID", value = id },
    ]
  }
  workload_identity_label = { "azure.workload.identity/use" = "true" }

  ingress = merge(
    { enabled = var.hostname != "" },
    # The chart's schema refuses an empty host: leave its default when there is no Ingress.
    var.hostname == "" ? {} : {
      className     = var.ingress_class_name
      host          = var.hostname
      tlsSecretName = var.tls_secret_name
    },
  )

  helm_values = {
    image = {
      repository = var.hangar_image_repository
      tag        = var.hangar_image_tag
    }
    secrets = {
      databaseUrl         = local.database_url
      adminToken          = random_password.admin_token.result
      masterKey           = random_id.master_key.b64_std
      platformPostgresUrl = local.platform_postgres_url
      platformRedisUrl    = local.redis_url
      cellToken           = "hgc_${random_password.cell_token.result}"
    }
    bucketUrl = "az://${azurerm_storage_container.hangar.name}"
    controlPlane = {
      uiDomain = var.ui_domain
      serviceAccount = {
        annotations = { "azure.workload.identity/client-id" = local.identity_client_ids["control-plane"] }
      }
      podLabels = local.workload_identity_label
      ingress   = local.ingress
      extraEnv  = local.azure_env["control-plane"]
    }
    agent = {
      cell          = var.cell_name
      workerSlots   = var.worker_slots
      brokerGateway = local.broker_gateway
      serviceAccount = {
        annotations = { "azure.workload.identity/client-id" = local.identity_client_ids["agent"] }
      }
      podLabels = local.workload_identity_label
      extraEnv  = local.azure_env["agent"]
      kubeCell = {
        worker_node_selector = { "node-pool" = "workers" }
        worker_tolerations = [
          { key = "hangar.dev/workers", operator = "Exists", effect = "NoSchedule" },
        ]
        # The only addresses environments' pods may open connections to for Postgres and, without
        # the broker gateway, Redis (with it, they reach the agent's port 9471 instead).
        postgres = { cidrs = [var.postgres_subnet_cidr], ports = [5432] }
        redis    = { cidrs = var.redis_cidrs != null ? var.redis_cidrs : [var.vnet_cidr], ports = var.redis_ports }
      }
    }
  }
}

resource "helm_release" "hangar" {
  name             = local.release_name
  chart            = local.chart_path
  namespace        = var.namespace
  create_namespace = true
  values           = [yamlencode(local.helm_values)]

  timeout = 600

  depends_on = [
    azurerm_kubernetes_cluster_node_pool.workers,
    azurerm_federated_identity_credential.this,
    azurerm_role_assignment.blob_data,
    azurerm_role_assignment.blob_delegator,
    azurerm_postgresql_flexible_server_configuration.require_secure_transport,
    azurerm_private_endpoint.redis,
    azurerm_private_dns_zone_virtual_network_link.redis,
  ]
}
