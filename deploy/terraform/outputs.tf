output "api_url" {
  description = "HTTPS base URL of the gateway (point domain_name's DNS at alb_dns_name)."
  value       = "https://${local.api_host}"
}

output "websocket_url" {
  description = "Voice WebSocket endpoint."
  value       = "wss://${local.api_host}/v1/voice"
}

output "alb_dns_name" {
  description = "ALB DNS name (CNAME or alias target for domain_name)."
  value       = aws_lb.main.dns_name
}

output "web_url" {
  description = "Web client URL (CloudFront)."
  value       = "https://${length(var.web_aliases) > 0 ? var.web_aliases[0] : aws_cloudfront_distribution.web.domain_name}"
}

output "web_bucket" {
  description = "Upload the web client here (then invalidate the CloudFront cache)."
  value       = aws_s3_bucket.web.bucket
}

output "cloudfront_distribution_id" {
  description = "For cache invalidations after a web client upload."
  value       = aws_cloudfront_distribution.web.id
}

output "ecr_repository_urls" {
  description = "Push each component's image here."
  value       = { for name, repo in aws_ecr_repository.service : name => repo.repository_url }
}

output "ecs_cluster_name" {
  description = "ECS cluster."
  value       = aws_ecs_cluster.main.name
}

output "dashboard_url" {
  description = "CloudWatch dashboard."
  value       = "https://${var.aws_region}.console.aws.amazon.com/cloudwatch/home?region=${var.aws_region}#dashboards:name=${aws_cloudwatch_dashboard.main.dashboard_name}"
}

output "alerts_topic_arn" {
  description = "SNS topic for alarms and budget alerts."
  value       = aws_sns_topic.alerts.arn
}

output "audio_bucket" {
  description = "S3 bucket for stored audio."
  value       = aws_s3_bucket.audio.bucket
}

output "dynamodb_tables" {
  description = "Conversation and session tables."
  value       = local.tables
}
