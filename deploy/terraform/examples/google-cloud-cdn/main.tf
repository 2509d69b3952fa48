# Google Cloud CDN in front of edge nodes running on Compute Engine in two regions. Each
# regional managed instance group must define the named port "edge" = 8443 and tag its
# instances "edge" (the firewall rule for Google's load balancers uses the tag).
#
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0.0, < 8.0.0"
    }
  }
}

variable "project" {
  type = string
}

provider "google" {
  project = var.project
}

module "edge_cdn" {
  source = "../../google-cloud-cdn"

  project = var.project
  name    = "media-edge"
  domains = ["media.example.com"]

  backend_type = "instance_group"
  instance_groups = [
    { region = "europe-west1", group = "projects/${var.project}/regions/europe-west1/instanceGroups/edge-eu-west" },
    { region = "us-east1", group = "projects/${var.project}/regions/us-east1/instanceGroups/edge-us-east" },
  ]
}

output "load_balancer_ip" {
  value = module.edge_cdn.ip_address
}
