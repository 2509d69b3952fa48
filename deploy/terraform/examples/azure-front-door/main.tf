# Azure Front Door in front of edge nodes in three regions: eu-west and us-east serve
# (priority 1, nearest wins), ap-southeast is the fallback (priority 2).
#
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.0.0, < 5.0.0"
    }
  }
}

provider "azurerm" {
  features {}
}

resource "azurerm_resource_group" "cdn" {
  name     = "media-cdn"
  location = "West Europe"
}

module "edge_cdn" {
  source = "../../azure-front-door"

  name                = "media-edge"
  resource_group_name = azurerm_resource_group.cdn.name
  edge_nodes = [
    { region = "eu-west", host_name = "eu-west.edge.example.com" },
    { region = "us-east", host_name = "us-east.edge.example.com" },
    { region = "ap-southeast", host_name = "ap-southeast.edge.example.com", priority = 2 },
  ]
}

output "front_door_host_name" {
  value = module.edge_cdn.endpoint_host_name
}
