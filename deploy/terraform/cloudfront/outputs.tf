output "distribution_id" {
  value = aws_cloudfront_distribution.edge.id
}

output "domain_name" {
  description = "The distribution's cloudfront.net name (CNAME the aliases to it)."
  value       = aws_cloudfront_distribution.edge.domain_name
}

output "hosted_zone_id" {
  value = aws_cloudfront_distribution.edge.hosted_zone_id
}

output "cache_policy_id" {
  value = aws_cloudfront_cache_policy.edge.id
}

output "origin_ids" {
  description = "CloudFront origin id of each edge region."
  value       = local.origin_ids
}
