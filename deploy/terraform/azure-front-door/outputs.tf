output "profile_id" {
  value = azurerm_cdn_frontdoor_profile.edge.id
}

output "endpoint_host_name" {
  description = "The endpoint's azurefd.net host name (CNAME custom domains to it)."
  value       = azurerm_cdn_frontdoor_endpoint.edge.host_name
}

output "origin_ids" {
  description = "Front Door origin id of each edge region."
  value       = { for k, o in azurerm_cdn_frontdoor_origin.edge : k => o.id }
}

output "route_id" {
  value = azurerm_cdn_frontdoor_route.edge.id
}
