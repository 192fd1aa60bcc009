# The cluster: a system pool for AKS, Hangar and environments' long-running pods, and a tainted,
# autoscaled workers pool for Celery workers and task pods.

resource "azurerm_kubernetes_cluster" "this" {
  name                = "${var.name}-aks"
  resource_group_name = var.resource_group_name
  location            = var.location
  dns_prefix          = var.name
  kubernetes_version  = var.kubernetes_version

  # Workload identity: pods exchange their ServiceAccount token for an Entra ID token.
  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  default_node_pool {
    name                        = "system"
    vm_size                     = var.system_vm_size
    vnet_subnet_id              = var.vnet_subnet_id
    orchestrator_version        = var.kubernetes_version
    auto_scaling_enabled        = true
    min_count                   = var.system_min_count
    max_count                   = var.system_max_count
    node_labels                 = { "node-pool" = "system" }
    temporary_name_for_rotation = "systemtmp"
    # only_critical_addons_enabled stays off: the chart's migrations Job has no tolerations,
    # and environments' schedulers run here too.
  }

  identity {
    type = "SystemAssigned"
  }

  network_profile {
    network_plugin = "azure"
    # Enforces the NetworkPolicies of Hangar's chart and of every environment.
    network_policy    = var.network_policy
    load_balancer_sku = "standard"
    service_cidr      = var.service_cidr
    dns_service_ip    = var.dns_service_ip
  }

  tags = var.tags
}

resource "azurerm_kubernetes_cluster_node_pool" "workers" {
  name                  = "workers"
  kubernetes_cluster_id = azurerm_kubernetes_cluster.this.id
  mode                  = "User"
  vm_size               = var.workers_vm_size
  vnet_subnet_id        = var.vnet_subnet_id
  orchestrator_version  = var.kubernetes_version
  auto_scaling_enabled  = true
  min_count             = var.workers_min_count
  max_count             = var.workers_max_count
  # What the cell's worker_node_selector and worker_tolerations (helm.tf) name.
  node_labels = { "node-pool" = "workers" }
  node_taints = ["hangar.dev/workers=true:NoSchedule"]

  tags = var.tags
}

# A cluster in a subnet of its own VNet needs Network Contributor on it (load balancers,
# node NICs); the Azure CLI grants it, Terraform has to.
resource "azurerm_role_assignment" "aks_subnet" {
  scope                = var.vnet_subnet_id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_kubernetes_cluster.this.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}
