# CloudFront in front of edge nodes in two regions (failover eu-west -> us-east), with
# Origin Shield in Ireland, next to the primary region.
#
#   terraform init && terraform apply
#
# Each node (or each region's load balancer) needs a publicly trusted certificate for its
# domain_name: CloudFront connects to https://<domain_name>:8443.

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.30.0, < 7.0.0"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

module "edge_cdn" {
  source = "../../cloudfront"

  name = "media"
  edge_nodes = [
    { region = "eu-west", domain_name = "eu-west.edge.example.com" },
    { region = "us-east", domain_name = "us-east.edge.example.com" },
  ]
  origin_shield_region = "eu-west-1"

  aliases             = ["media.example.com"]
  acm_certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
}

output "cloudfront_domain_name" {
  value = module.edge_cdn.domain_name
}
