# Azure Front Door (Standard/Premium) in front of edge nodes: one origin per region in one
# origin group, health-probed on the node's traffic port. deploy/check.py checks the
# defaults below against deploy/edge.toml.

variable "name" {
  description = "Name of the Front Door profile (and prefix of its parts)."
  type        = string
}

variable "resource_group_name" {
  type = string
}

variable "sku_name" {
  type    = string
  default = "Standard_AzureFrontDoor"
  validation {
    condition     = contains(["Standard_AzureFrontDoor", "Premium_AzureFrontDoor"], var.sku_name)
    error_message = "sku_name is Standard_AzureFrontDoor or Premium_AzureFrontDoor."
  }
}

variable "edge_nodes" {
  description = "Edge node origins, one per region: host name Front Door connects to (its certificate must match when certificate_name_check_enabled), priority 1-5 (lower first), weight 1-1000 among equals."
  type = list(object({
    region    = string
    host_name = string
    priority  = optional(number, 1)
    weight    = optional(number, 500)
  }))
  validation {
    condition     = length(var.edge_nodes) >= 1
    error_message = "Give at least one edge node."
  }
}

variable "origin_protocol" {
  description = "https: to the node's TLS listener ([server] listen). http: to its plaintext listener ([server] plain_listen)."
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
  description = "The node's [server] plain_listen port."
  type        = number
  default     = 8080
}

variable "certificate_name_check_enabled" {
  type    = bool
  default = true
}

variable "health_probe_path" {
  description = "Probed on each node's traffic port: the node config routes /health (route cdn-probe, no token-auth) to the origin's health path, cached 1 s."
  type        = string
  default     = "/health"
}

variable "health_probe_interval_seconds" {
  type    = number
  default = 30
}

variable "token_query_params" {
  description = "Query parameters that carry viewer tokens (token-auth). Part of Front Door's cache key, so the node checks every viewer's token."
  type        = list(string)
  default     = ["edge_token", "hdnts", "Expires", "Policy", "Signature", "Key-Pair-Id"]
}

variable "extra_query_params" {
  description = "Other query parameters that change the response (e.g. manifest-rewrite's device_query)."
  type        = list(string)
  default     = []
}

variable "patterns_to_match" {
  description = "Paths Front Door caches (token parameters keyed)."
  type        = list(string)
  default     = ["/*"]
}

variable "uncached_patterns" {
  description = "Paths of token-auth routes: Front Door cannot key on cookies, so an answer the node gave to a viewer's session cookie must not be cached there (the node caches them itself). deploy/check.py checks that every token-auth route of deploy/edge.toml is covered."
  type        = list(string)
  default     = ["/secure/*"]
}

variable "tags" {
  type    = map(string)
  default = {}
}
