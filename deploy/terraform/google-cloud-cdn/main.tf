locals {
  https        = var.origin_protocol == "https"
  edge_port    = local.https ? var.edge_https_port : var.edge_http_port
  use_groups   = var.backend_type == "instance_group"
  query_params = distinct(concat(var.token_query_params, var.extra_query_params))
}

resource "google_compute_global_address" "edge" {
  project = var.project
  name    = "${var.name}-ip"
}

resource "google_compute_managed_ssl_certificate" "edge" {
  project = var.project
  name    = "${var.name}-cert"
  managed {
    domains = var.domains
  }
}

resource "google_compute_ssl_policy" "edge" {
  project         = var.project
  name            = "${var.name}-tls"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

# Health check for instance groups: the node's readiness on the admin port.
resource "google_compute_health_check" "edge" {
  count   = local.use_groups ? 1 : 0
  project = var.project
  name    = "${var.name}-ready"

  check_interval_sec  = 5
  timeout_sec         = 3
  healthy_threshold   = 2
  unhealthy_threshold = 2

  http_health_check {
    port         = var.admin_port
    request_path = var.health_check_path
  }

  log_config {
    enable = false
  }
}

# Google's front ends and health checkers reach the nodes' traffic and admin ports.
resource "google_compute_firewall" "edge" {
  count   = local.use_groups ? 1 : 0
  project = var.project
  name    = "${var.name}-lb-to-edge"
  network = var.network

  direction     = "INGRESS"
  source_ranges = ["35.191.0.0/16", "130.211.0.0/22"]
  target_tags   = var.target_tags

  allow {
    protocol = "tcp"
    ports    = [tostring(local.edge_port), tostring(var.admin_port)]
  }
}

resource "google_compute_global_network_endpoint_group" "edge" {
  count                 = local.use_groups ? 0 : 1
  project               = var.project
  name                  = "${var.name}-neg"
  network_endpoint_type = "INTERNET_FQDN_PORT"
  default_port          = local.edge_port
}

resource "google_compute_global_network_endpoint" "edge" {
  count                         = local.use_groups ? 0 : 1
  project                       = var.project
  global_network_endpoint_group = google_compute_global_network_endpoint_group.edge[0].id
  fqdn                          = var.internet_endpoint.fqdn
  port                          = local.edge_port
}

resource "google_compute_backend_service" "edge" {
  project               = var.project
  name                  = "${var.name}-edge"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = local.https ? "HTTPS" : "HTTP"
  port_name             = local.use_groups ? var.port_name : null
  timeout_sec           = 30
  health_checks         = local.use_groups ? [google_compute_health_check.edge[0].id] : null
  security_policy       = var.security_policy
  # Longer than the preStop sleep: the LB stops new requests before the node drains.
  connection_draining_timeout_sec = 30
  custom_request_headers          = local.use_groups ? [] : ["host: ${var.internet_endpoint.fqdn}"]

  enable_cdn = true
  cdn_policy {
    cache_mode                   = "USE_ORIGIN_HEADERS"
    default_ttl                  = var.default_ttl
    serve_while_stale            = 86400
    signed_url_cache_max_age_sec = 0
    negative_caching             = true

    # Only the token parameters (and extra_query_params) and token cookies are keyed: a
    # signed URL is its own entry, so a viewer without a valid token never gets a cached
    # copy.
    cache_key_policy {
      include_host           = true
      include_protocol       = false
      include_query_string   = true
      query_string_whitelist = local.query_params
      include_named_cookies  = var.cache_cookies
    }
  }

  dynamic "backend" {
    for_each = local.use_groups ? var.instance_groups : []
    content {
      group           = backend.value.group
      balancing_mode  = "UTILIZATION"
      max_utilization = 0.8
      capacity_scaler = 1.0
    }
  }

  dynamic "backend" {
    for_each = local.use_groups ? [] : [1]
    content {
      group = google_compute_global_network_endpoint_group.edge[0].id
    }
  }

  log_config {
    enable      = true
    sample_rate = var.log_sample_rate
  }

  lifecycle {
    precondition {
      condition     = local.use_groups ? length(var.instance_groups) > 0 : var.internet_endpoint != null
      error_message = "backend_type = instance_group needs instance_groups; internet_neg needs internet_endpoint."
    }
  }
}

resource "google_compute_url_map" "edge" {
  project         = var.project
  name            = "${var.name}-urlmap"
  default_service = google_compute_backend_service.edge.id
}

resource "google_compute_target_https_proxy" "edge" {
  project          = var.project
  name             = "${var.name}-https"
  url_map          = google_compute_url_map.edge.id
  ssl_certificates = [google_compute_managed_ssl_certificate.edge.id]
  ssl_policy       = google_compute_ssl_policy.edge.id
  # HTTP/3 to viewers from Google's edge.
  quic_override = "ENABLE"
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project
  name                  = "${var.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  ip_address            = google_compute_global_address.edge.id
  port_range            = "443"
  target                = google_compute_target_https_proxy.edge.id
}

# Plain HTTP only redirects to HTTPS.
resource "google_compute_url_map" "redirect" {
  project = var.project
  name    = "${var.name}-redirect"
  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  project = var.project
  name    = "${var.name}-http"
  url_map = google_compute_url_map.redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  project               = var.project
  name                  = "${var.name}-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  ip_address            = google_compute_global_address.edge.id
  port_range            = "80"
  target                = google_compute_target_http_proxy.redirect.id
}
