terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 5.6.0 added settings.ip_configuration.ssl_mode to google_sql_database_instance.
      version = ">= 5.6"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.12"
    }
  }
}
