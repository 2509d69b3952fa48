# CloudFront in front of edge nodes: each region's node (or the load balancer in front of
# a region's nodes) is a custom origin; the first two form an origin group (failover).
# deploy/check.py checks the defaults below against deploy/edge.toml.

variable "name" {
  description = "Name prefix of the distribution's policies."
  type        = string
}

variable "edge_nodes" {
  description = "Edge node origins, one per region, in failover order: DNS name CloudFront connects to (its TLS certificate must be valid for that name)."
  type = list(object({
    region      = string
    domain_name = string
  }))
  validation {
    condition     = length(var.edge_nodes) >= 1
    error_message = "Give at least one edge node."
  }
}

variable "origin_shield_region" {
  description = "AWS region of the Origin Shield in front of the edge nodes (e.g. eu-west-1, next to the primary region); null: no shield."
  type        = string
  default     = null
}

variable "origin_protocol" {
  description = "https: to the node's TLS listener ([server] listen). http: to its plaintext listener ([server] plain_listen), for private links only."
  type        = string
  default     = "https"
  validation {
    condition     = contains(["https", "http"], var.origin_protocol)
    error_message = "origin_protocol is https or http."
  }
}

variable "edge_https_port" {
  description = "The node's [server] listen port (TLS)."
  type        = number
  default     = 8443
}

variable "edge_http_port" {
  description = "The node's [server] plain_listen port (used when origin_protocol = http)."
  type        = number
  default     = 8080
}

variable "token_query_params" {
  description = "Query parameters that carry viewer tokens (token-auth: native edge_token, Akamai hdnts, CloudFront Expires/Policy/Signature/Key-Pair-Id). They are part of CloudFront's cache key and forwarded, so the node checks every viewer's token; a CDN key without them would serve a token-protected object to anyone."
  type        = list(string)
  default     = ["edge_token", "hdnts", "Expires", "Policy", "Signature", "Key-Pair-Id"]
}

variable "extra_query_params" {
  description = "Other query parameters that change the response (e.g. manifest-rewrite's device_query), keyed and forwarded."
  type        = list(string)
  default     = []
}

variable "cache_cookies" {
  description = "Cookies keyed and forwarded: token-auth's session cookie and Akamai's cookie token (keyed, so an answer opened by one viewer's cookie is never served to another)."
  type        = list(string)
  default     = ["edge_session", "hdnts"]
}

variable "cache_headers" {
  description = "Request headers keyed and forwarded, e.g. [\"Authorization\"] for JWTs in headers."
  type        = list(string)
  default     = []
}

variable "default_ttl" {
  description = "Seconds CloudFront keeps a response that has no Cache-Control (the node forwards the origin's)."
  type        = number
  default     = 60
}

variable "aliases" {
  description = "Viewer host names (CNAMEs) of the distribution."
  type        = list(string)
  default     = []
}

variable "acm_certificate_arn" {
  description = "ACM certificate (us-east-1) for the aliases; null: the cloudfront.net certificate."
  type        = string
  default     = null
}

variable "price_class" {
  type    = string
  default = "PriceClass_All"
}

variable "web_acl_id" {
  description = "AWS WAF web ACL (ARN) to attach; null: none (the node can run its own WAF module)."
  type        = string
  default     = null
}

variable "logging_bucket" {
  description = "S3 bucket domain name for standard access logs; null: no logs."
  type        = string
  default     = null
}

variable "tags" {
  type    = map(string)
  default = {}
}
