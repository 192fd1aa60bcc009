terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # EKS access entries, Pod Identity associations and the access_config block need >= 5.40.
      version = ">= 5.40, < 6.0"
    }
    random = {
      source = "hashicorp/random"
      # random_bytes appeared in 3.5.0.
      version = ">= 3.5"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.12"
    }
  }
}
