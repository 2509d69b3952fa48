# Google Cloud CDN on a global external Application Load Balancer in front of edge nodes.
# Backends: instance groups of edge nodes, one or more per region (health-checked on the
# node's admin /ready, so a draining node leaves first), or one internet NEG (a host name
# outside Google Cloud; Google does not health-check internet NEGs).
# deploy/check.py checks the defaults below against deploy/edge.toml.

variable "project" {
  type = string
}

variable "name" {
  description = "Name prefix of the load balancer's resources (lowercase, digits, '-')."
  type        = string
}

variable "domains" {
  description = "Viewer host names: a Google-managed certificate is made for them."
  type        = list(string)
}

variable "backend_type" {
  description = "instance_group: edge nodes on Compute Engine (var.instance_groups). internet_neg: one host name outside Google Cloud (var.internet_endpoint)."
  type        = string
  default     = "instance_group"
  validation {
    condition     = contains(["instance_group", "internet_neg"], var.backend_type)
    error_message = "backend_type is instance_group or internet_neg."
  }
}

variable "instance_groups" {
  description = "Instance groups of edge nodes (self links), each with its region. Each group needs the named port var.port_name (the node's listen port)."
  type = list(object({
    region = string
    group  = string
  }))
  default = []
}

variable "internet_endpoint" {
  description = "The edge nodes' host name outside Google Cloud (global internet NEGs take one endpoint: a geo-DNS or anycast name over the regions)."
  type = object({
    fqdn = string
  })
  default = null
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

variable "port_name" {
  description = "Named port of the instance groups that maps to the port the load balancer uses."
  type        = string
  default     = "edge"
}

variable "admin_port" {
  description = "The node's [admin] listen port: the health check asks /ready there."
  type        = number
  default     = 9901
}

variable "health_check_path" {
  description = "200 while serving, 503 while draining (admin API, no token)."
  type        = string
  default     = "/ready"
}

variable "network" {
  description = "VPC network of the instance groups (for the health-check firewall rule)."
  type        = string
  default     = "default"
}

variable "target_tags" {
  description = "Network tags of the edge instances the firewall rule opens to Google's load balancers and health checkers."
  type        = list(string)
  default     = ["edge"]
}

variable "token_query_params" {
  description = "Query parameters that carry viewer tokens (token-auth). Part of Cloud CDN's cache key, so the node checks every viewer's token."
  type        = list(string)
  default     = ["edge_token", "hdnts", "Expires", "Policy", "Signature", "Key-Pair-Id"]
}

variable "extra_query_params" {
  description = "Other query parameters that change the response (e.g. manifest-rewrite's device_query)."
  type        = list(string)
  default     = []
}

variable "cache_cookies" {
  description = "Cookies that carry viewer tokens (token-auth's session cookie, Akamai's cookie token): keyed, so an answer opened by one viewer's cookie is never served to another."
  type        = list(string)
  default     = ["edge_session", "hdnts"]
}

variable "default_ttl" {
  description = "Seconds Cloud CDN keeps a response without Cache-Control."
  type        = number
  default     = 60
}

variable "log_sample_rate" {
  type    = number
  default = 1.0
}

variable "security_policy" {
  description = "Cloud Armor policy (self link) for the backend service; null: none."
  type        = string
  default     = null
}
