variable "name" {
  description = "Service name (stt, llm, tts, storage, gateway); also its Service Connect DNS name."
  type        = string
}

variable "name_prefix" {
  description = "Prefix for AWS resource names (project-environment)."
  type        = string
}

variable "aws_region" {
  description = "Region, for the awslogs driver."
  type        = string
}

variable "image" {
  description = "Container image URI with tag."
  type        = string
}

variable "cpu" {
  description = "Task CPU units (1024 = 1 vCPU)."
  type        = number
}

variable "memory" {
  description = "Task memory in MiB."
  type        = number
}

variable "port" {
  description = "Container port the service listens on."
  type        = number
}

variable "port_name" {
  description = "Port mapping name used by Service Connect."
  type        = string
}

variable "app_protocol" {
  description = "grpc or http, so Service Connect's proxy understands the traffic."
  type        = string
}

variable "environment" {
  description = "Environment variables for the app container."
  type        = map(string)
}

variable "secrets" {
  description = "Environment variables of the app container taken from Secrets Manager: name -> secret ARN."
  type        = map(string)
  default     = {}
}

variable "health_check_command" {
  description = "Container health check command (CMD form)."
  type        = list(string)
}

variable "health_check_start_period" {
  description = "Seconds a starting container gets (model loading) before failed checks count."
  type        = number
  default     = 120
}

variable "stop_timeout" {
  description = "Seconds between SIGTERM and SIGKILL (graceful shutdown; Fargate max 120)."
  type        = number
  default     = 30
}

variable "task_policy_enabled" {
  description = "Attach task_policy_json to the task role (false when the service uses no AWS API)."
  type        = bool
}

variable "task_policy_json" {
  description = "Least-privilege IAM policy for this service's AWS calls."
  type        = string
}

variable "cluster_arn" {
  description = "ECS cluster ARN."
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster name (for the scaling resource id)."
  type        = string
}

variable "execution_role_arn" {
  description = "Role ECS uses to pull the image and write logs."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the tasks."
  type        = list(string)
}

variable "security_group_id" {
  description = "The service's security group."
  type        = string
}

variable "service_connect_namespace_arn" {
  description = "Cloud Map namespace for Service Connect."
  type        = string
}

variable "service_connect_server" {
  description = "Publish this service under its name (false: client only, like the gateway)."
  type        = bool
}

variable "target_group_arn" {
  description = "ALB target group to register tasks in (gateway only)."
  type        = string
  default     = null
}

variable "min_count" {
  description = "Fewest running tasks."
  type        = number
}

variable "max_count" {
  description = "Most running tasks."
  type        = number
}

variable "cpu_target" {
  description = "Average CPU % held by target tracking."
  type        = number
}

variable "alb_resource_label" {
  description = "app/<lb>/<id>/targetgroup/<tg>/<id> for ALBRequestCountPerTarget tracking; null: none."
  type        = string
  default     = null
}

variable "alb_requests_per_target" {
  description = "Requests per target per minute held by target tracking (with alb_resource_label)."
  type        = number
  default     = 120
}

variable "sessions_per_task" {
  description = "Active sessions per task held via the custom metric Echo/ActiveSessions; null: none."
  type        = number
  default     = null
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key for the log group."
  type        = string
}

variable "adot_collector_image" {
  description = "ADOT collector sidecar image."
  type        = string
}
