locals {
  https        = var.origin_protocol == "https"
  nodes        = { for n in var.edge_nodes : n.region => n }
  query_params = distinct(concat(var.token_query_params, var.extra_query_params))
}

resource "azurerm_cdn_frontdoor_profile" "edge" {
  name                     = var.name
  resource_group_name      = var.resource_group_name
  sku_name                 = var.sku_name
  response_timeout_seconds = 60
  tags                     = var.tags
}

resource "azurerm_cdn_frontdoor_endpoint" "edge" {
  name                     = "${var.name}-edge"
  cdn_frontdoor_profile_id = azurerm_cdn_frontdoor_profile.edge.id
  enabled                  = true
  tags                     = var.tags
}

resource "azurerm_cdn_frontdoor_origin_group" "edge" {
  name                     = "${var.name}-edge-nodes"
  cdn_frontdoor_profile_id = azurerm_cdn_frontdoor_profile.edge.id
  session_affinity_enabled = false

  restore_traffic_time_to_healed_or_new_endpoint_in_minutes = 5

  # A draining node closes its listener: the probe fails and Front Door moves on.
  health_probe {
    protocol            = local.https ? "Https" : "Http"
    path                = var.health_probe_path
    request_type        = "HEAD"
    interval_in_seconds = var.health_probe_interval_seconds
  }

  load_balancing {
    sample_size                        = 4
    successful_samples_required        = 3
    additional_latency_in_milliseconds = 50
  }
}

resource "azurerm_cdn_frontdoor_origin" "edge" {
  for_each = local.nodes

  name                           = "edge-${each.key}"
  cdn_frontdoor_origin_group_id  = azurerm_cdn_frontdoor_origin_group.edge.id
  enabled                        = true
  host_name                      = each.value.host_name
  origin_host_header             = each.value.host_name
  http_port                      = var.edge_http_port
  https_port                     = var.edge_https_port
  priority                       = each.value.priority
  weight                         = each.value.weight
  certificate_name_check_enabled = var.certificate_name_check_enabled
}

resource "azurerm_cdn_frontdoor_route" "edge" {
  name                          = "${var.name}-edge"
  cdn_frontdoor_endpoint_id     = azurerm_cdn_frontdoor_endpoint.edge.id
  cdn_frontdoor_origin_group_id = azurerm_cdn_frontdoor_origin_group.edge.id
  cdn_frontdoor_origin_ids      = [for o in azurerm_cdn_frontdoor_origin.edge : o.id]
  enabled                       = true

  forwarding_protocol    = local.https ? "HttpsOnly" : "HttpOnly"
  https_redirect_enabled = true
  patterns_to_match      = var.patterns_to_match
  supported_protocols    = ["Http", "Https"]
  link_to_default_domain = true

  # Only the token parameters (and extra_query_params) are keyed: a signed URL is its own
  # entry, so a viewer without a valid token never gets a cached copy.
  cache {
    query_string_caching_behavior = "IncludeSpecifiedQueryStrings"
    query_strings                 = local.query_params
    compression_enabled           = true
    content_types_to_compress     = ["application/x-mpegurl", "application/json", "application/xml", "text/plain"]
  }
}

# Token-protected paths: forwarded, never cached by Front Door (it cannot key on the
# session cookie); the more specific pattern wins over patterns_to_match.
resource "azurerm_cdn_frontdoor_route" "uncached" {
  count                         = length(var.uncached_patterns) > 0 ? 1 : 0
  name                          = "${var.name}-edge-uncached"
  cdn_frontdoor_endpoint_id     = azurerm_cdn_frontdoor_endpoint.edge.id
  cdn_frontdoor_origin_group_id = azurerm_cdn_frontdoor_origin_group.edge.id
  cdn_frontdoor_origin_ids      = [for o in azurerm_cdn_frontdoor_origin.edge : o.id]
  enabled                       = true

  forwarding_protocol    = local.https ? "HttpsOnly" : "HttpOnly"
  https_redirect_enabled = true
  patterns_to_match      = var.uncached_patterns
  supported_protocols    = ["Http", "Https"]
  link_to_default_domain = true
}
