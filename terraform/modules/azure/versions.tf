terraform {
  required_version = ">= 1.5"

  required_providers {
    # 4.65 is the first 4.x release with `user_assigned_identity_id` on
    # azurerm_federated_identity_credential (it replaced `parent_id`); 5.x is not covered.
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.65.0, < 5.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    # Configured by the caller, with the cluster's credentials (README).
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.12"
    }
  }
}
