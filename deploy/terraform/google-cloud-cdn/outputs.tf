output "ip_address" {
  description = "The load balancer's address: point the domains' A records here."
  value       = google_compute_global_address.edge.address
}

output "backend_service_id" {
  value = google_compute_backend_service.edge.id
}

output "named_port" {
  description = "The named port every instance group of edge nodes must define."
  value = {
    name = var.port_name
    port = local.edge_port
  }
}
