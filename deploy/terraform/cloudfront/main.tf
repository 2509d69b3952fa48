locals {
  https        = var.origin_protocol == "https"
  origin_ids   = [for n in var.edge_nodes : "edge-${n.region}"]
  use_group    = length(var.edge_nodes) >= 2
  target       = local.use_group ? "edge-failover" : local.origin_ids[0]
  query_params = distinct(concat(var.token_query_params, var.extra_query_params))
}

# What CloudFront keys on and forwards: the token parameters (so the node verifies every
# viewer's token), the session cookies, nothing else.
resource "aws_cloudfront_cache_policy" "edge" {
  name        = "${var.name}-edge"
  comment     = "edge nodes: token parameters keyed and forwarded"
  min_ttl     = 0
  default_ttl = var.default_ttl
  max_ttl     = 31536000

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_gzip   = true
    enable_accept_encoding_brotli = true

    query_strings_config {
      query_string_behavior = "whitelist"
      query_strings {
        items = local.query_params
      }
    }

    cookies_config {
      cookie_behavior = length(var.cache_cookies) > 0 ? "whitelist" : "none"
      dynamic "cookies" {
        for_each = length(var.cache_cookies) > 0 ? [1] : []
        content {
          items = var.cache_cookies
        }
      }
    }

    headers_config {
      header_behavior = length(var.cache_headers) > 0 ? "whitelist" : "none"
      dynamic "headers" {
        for_each = length(var.cache_headers) > 0 ? [1] : []
        content {
          items = var.cache_headers
        }
      }
    }
  }
}

# The viewer's address and country for the node's logs (not keyed).
resource "aws_cloudfront_origin_request_policy" "edge" {
  name    = "${var.name}-edge"
  comment = "edge nodes: viewer address for logs"

  cookies_config {
    cookie_behavior = "none"
  }
  headers_config {
    header_behavior = "whitelist"
    headers {
      items = ["CloudFront-Viewer-Address", "CloudFront-Viewer-Country"]
    }
  }
  query_strings_config {
    query_string_behavior = "none"
  }
}

resource "aws_cloudfront_response_headers_policy" "edge" {
  name    = "${var.name}-edge"
  comment = "edge nodes: HSTS and nosniff"

  security_headers_config {
    strict_transport_security {
      access_control_max_age_sec = 63072000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    content_type_options {
      override = false
    }
  }
}

resource "aws_cloudfront_distribution" "edge" {
  #checkov:skip=CKV_AWS_68:WAF is optional (var.web_acl_id); the node can run its own WAF module
  #checkov:skip=CKV_AWS_86:access logs are optional (var.logging_bucket); the nodes log every request
  #checkov:skip=CKV_AWS_174:the minimum TLS version is TLSv1.2_2021 with an ACM certificate; the cloudfront.net default certificate cannot set one
  #checkov:skip=CKV_AWS_305:a media CDN has no default root object
  #checkov:skip=CKV_AWS_374:geo restriction is a business decision, not a default
  #checkov:skip=CKV2_AWS_42:a custom certificate is used when var.acm_certificate_arn is set
  #checkov:skip=CKV2_AWS_47:WAF is optional (var.web_acl_id)
  #checkov:skip=CKV_AWS_310:failover: an origin group is made when two or more edge nodes are given
  enabled         = true
  is_ipv6_enabled = true
  http_version    = "http2and3"
  price_class     = var.price_class
  aliases         = var.aliases
  web_acl_id      = var.web_acl_id
  comment         = "${var.name}: edge nodes as origin"
  tags            = var.tags

  dynamic "origin" {
    for_each = var.edge_nodes
    content {
      origin_id   = "edge-${origin.value.region}"
      domain_name = origin.value.domain_name

      custom_origin_config {
        http_port                = var.edge_http_port
        https_port               = var.edge_https_port
        origin_protocol_policy   = local.https ? "https-only" : "http-only"
        origin_ssl_protocols     = ["TLSv1.2"]
        origin_read_timeout      = 30
        origin_keepalive_timeout = 60
      }

      dynamic "origin_shield" {
        for_each = var.origin_shield_region == null ? [] : [var.origin_shield_region]
        content {
          enabled              = true
          origin_shield_region = origin_shield.value
        }
      }
    }
  }

  # The first two regions: the second takes over on errors or timeouts of the first.
  dynamic "origin_group" {
    for_each = local.use_group ? [1] : []
    content {
      origin_id = "edge-failover"
      failover_criteria {
        status_codes = [500, 502, 503, 504]
      }
      member {
        origin_id = local.origin_ids[0]
      }
      member {
        origin_id = local.origin_ids[1]
      }
    }
  }

  default_cache_behavior {
    target_origin_id           = local.target
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD", "OPTIONS"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = aws_cloudfront_cache_policy.edge.id
    origin_request_policy_id   = aws_cloudfront_origin_request_policy.edge.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.edge.id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
      locations        = []
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.acm_certificate_arn == null
    acm_certificate_arn            = var.acm_certificate_arn
    ssl_support_method             = var.acm_certificate_arn == null ? null : "sni-only"
    minimum_protocol_version       = var.acm_certificate_arn == null ? "TLSv1" : "TLSv1.2_2021"
  }

  dynamic "logging_config" {
    for_each = var.logging_bucket == null ? [] : [var.logging_bucket]
    content {
      bucket          = logging_config.value
      prefix          = "${var.name}/"
      include_cookies = false
    }
  }
}
