# ---------------------------------------------------------------------------------------------------
# The handful an operator must set: region, the ACM certificate for the API, and where alerts go.
# ---------------------------------------------------------------------------------------------------
variable "aws_region" {
  description = "Region for everything except CloudFront (global)."
  type        = string
  default     = "us-east-1"
}

variable "certificate_arn" {
  description = "ACM certificate ARN (same region) for the ALB's HTTPS listener, e.g. for api.example.com."
  type        = string
}

variable "domain_name" {
  description = "DNS name clients use for the API (points at the ALB); only used to print URLs. Empty: the ALB's name."
  type        = string
  default     = ""
}

variable "alarm_emails" {
  description = "Addresses subscribed to alarms and budget alerts (each must confirm the SNS e-mail)."
  type        = list(string)
  default     = []
}

variable "monthly_budget_usd" {
  description = "AWS Budgets monthly cost limit; alerts at 80 % actual and 100 % forecast."
  type        = number
  default     = 600
}

# ---------------------------------------------------------------------------------------------------
# Naming and network
# ---------------------------------------------------------------------------------------------------
variable "project" {
  description = "Name prefix for every resource."
  type        = string
  default     = "echo"
}

variable "environment" {
  description = "Environment tag and name suffix (prod, staging...)."
  type        = string
  default     = "prod"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "VPC address range; split into one public and one private /20 per availability zone."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones to spread over (2 or 3)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count must be 2 or 3 (the ALB needs two zones)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper) instead of one per zone (survives a zone outage)."
  type        = bool
  default     = true
}

variable "allowed_ingress_cidrs" {
  description = "Who may reach the ALB on 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

# ---------------------------------------------------------------------------------------------------
# Services: images, sizes, scaling
# ---------------------------------------------------------------------------------------------------
variable "image_tag" {
  description = "Tag pushed to every ECR repository (tags are immutable). Images for AWS backends use '<tag>-aws'."
  type        = string
  default     = "0.1.0"
}

variable "services" {
  description = <<-EOT
    Fargate size and scaling bounds per service. cpu in CPU units (1024 = 1 vCPU), memory in MiB, a valid
    Fargate pair. cpu_target: average CPU % that target tracking holds (stt, llm, tts scale on this; the
    gateway and storage also have it as a backstop).
  EOT
  type = map(object({
    cpu        = number
    memory     = number
    min_count  = number
    max_count  = number
    cpu_target = number
  }))
  default = {
    gateway = { cpu = 512, memory = 1024, min_count = 2, max_count = 10, cpu_target = 60 }
    stt     = { cpu = 2048, memory = 4096, min_count = 1, max_count = 10, cpu_target = 60 }
    llm     = { cpu = 4096, memory = 8192, min_count = 1, max_count = 10, cpu_target = 60 }
    tts     = { cpu = 1024, memory = 2048, min_count = 1, max_count = 10, cpu_target = 60 }
    storage = { cpu = 256, memory = 512, min_count = 1, max_count = 4, cpu_target = 70 }
  }

  validation {
    condition     = length(setsubtract(["gateway", "stt", "llm", "tts", "storage"], keys(var.services))) == 0
    error_message = "services must have an entry for gateway, stt, llm, tts and storage."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : s.min_count >= 1 && s.max_count >= s.min_count])
    error_message = "Each service needs 1 <= min_count <= max_count."
  }
}

variable "gateway_requests_per_target" {
  description = "ALB RequestCountPerTarget (per minute) the gateway's target tracking holds. A voice session is one WebSocket upgrade request plus a few HTTP calls."
  type        = number
  default     = 120
}

variable "gateway_sessions_per_task" {
  description = "Active WebSocket sessions per gateway task to hold, from the custom metric Echo/ActiveSessions the gateway publishes every minute. null: do not scale on it (ALB requests and CPU only)."
  type        = number
  default     = null
}

variable "deregistration_delay_seconds" {
  description = "How long a draining gateway task keeps its open WebSocket sessions before ECS stops it on scale-in or deploy (max 3600)."
  type        = number
  default     = 900

  validation {
    condition     = var.deregistration_delay_seconds >= 0 && var.deregistration_delay_seconds <= 3600
    error_message = "The ALB allows a deregistration delay of 0 to 3600 seconds."
  }
}

variable "alb_idle_timeout_seconds" {
  description = "ALB idle timeout; a WebSocket with no frames for this long is closed. Voice sessions pause, so keep it long."
  type        = number
  default     = 1800
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes from one IP before the WAF blocks it."
  type        = number
  default     = 2000
}

# ---------------------------------------------------------------------------------------------------
# Backends: local (model inside the image, CPU inference on Fargate) or the AWS managed service
# ---------------------------------------------------------------------------------------------------
variable "stt_backend" {
  description = "whisper (faster-whisper in the task) or transcribe (Amazon Transcribe streaming)."
  type        = string
  default     = "whisper"

  validation {
    condition     = contains(["whisper", "transcribe"], var.stt_backend)
    error_message = "stt_backend must be whisper or transcribe."
  }
}

variable "llm_backend" {
  description = "llamacpp (GGUF model in the task) or bedrock (Amazon Bedrock)."
  type        = string
  default     = "llamacpp"

  validation {
    condition     = contains(["llamacpp", "bedrock"], var.llm_backend)
    error_message = "llm_backend must be llamacpp or bedrock (ollama is for a single machine)."
  }
}

variable "tts_backend" {
  description = "piper (Piper voice in the task) or polly (Amazon Polly)."
  type        = string
  default     = "piper"

  validation {
    condition     = contains(["piper", "polly"], var.tts_backend)
    error_message = "tts_backend must be piper or polly."
  }
}

variable "stt_model" {
  description = "ECHO_STT_MODEL for the whisper backend (baked into the image at build time)."
  type        = string
  default     = "whisper-tiny.en"
}

variable "llm_model" {
  description = "ECHO_LLM_MODEL for the llamacpp backend (baked into the image at build time)."
  type        = string
  default     = "qwen2.5-coder-0.5b"
}

variable "tts_voice" {
  description = "ECHO_TTS_VOICE for the piper backend (baked into the image at build time)."
  type        = string
  default     = "piper-joe"
}

variable "bedrock_model_ids" {
  description = <<-EOT
    Bedrock model IDs the llm task may invoke; the first is BEDROCK_MODEL_ID (the "quick" purpose). The
    default is every model services/llm/bedrock_models.yaml routes to (each purpose and its fallback), so
    no purpose or fallback is denied; keep the two in step when either changes (tests/deploy checks it).
  EOT
  type        = list(string)
  default = [
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "amazon.titan-text-express-v1",
    "amazon.titan-text-lite-v1",
    "mistral.mistral-7b-instruct-v0:2",
  ]

  validation {
    condition     = length(var.bedrock_model_ids) > 0
    error_message = "Name at least one Bedrock model."
  }
}

variable "bedrock_region" {
  description = "Region for Bedrock calls; empty means aws_region."
  type        = string
  default     = ""
}

variable "polly_voice_id" {
  description = "POLLY_VOICE_ID for the polly backend."
  type        = string
  default     = "Joanna"
}

variable "polly_engine" {
  description = "POLLY_ENGINE: standard, neural, long-form or generative."
  type        = string
  default     = "neural"
}

# ---------------------------------------------------------------------------------------------------
# Data, logs, telemetry
# ---------------------------------------------------------------------------------------------------
variable "audio_ia_after_days" {
  description = "Move stored audio to S3 Standard-IA after this many days (S3 allows no Standard-IA transition before day 30); only when retention_days keeps audio longer."
  type        = number
  default     = 30

  validation {
    condition     = var.audio_ia_after_days >= 30
    error_message = "audio_ia_after_days must be at least 30: S3 rejects transitions to Standard-IA earlier than 30 days."
  }
}

variable "retention_days" {
  description = "Stored conversations, sessions, usage and audio expire this many days after they are written (DynamoDB TTL for records, the bucket's lifecycle rule for audio); 0 keeps them."
  type        = number
  default     = 30

  validation {
    condition     = var.retention_days >= 0 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of days, 0 or more."
  }
}

variable "deletion_protection" {
  description = "Protect the DynamoDB tables and the ALB from deletion (turn off to tear down a test stack)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention for service, VPC flow and WAF logs."
  type        = number
  default     = 30
}

variable "adot_collector_image" {
  description = "AWS Distro for OpenTelemetry collector sidecar (forwards OTLP traces to X-Ray)."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3"
}

variable "web_aliases" {
  description = "Custom names for the web client's CloudFront distribution (needs web_certificate_arn)."
  type        = list(string)
  default     = []
}

variable "web_certificate_arn" {
  description = "ACM certificate in us-east-1 for web_aliases; empty: the cloudfront.net name and certificate."
  type        = string
  default     = ""
}

variable "service_token_version" {
  description = "Bump to rotate the service credential (ECHO_SERVICE_TOKEN): a new random value is written; then redeploy all five services."
  type        = number
  default     = 1
}

variable "jwt_issuer" {
  description = "OIDC issuer whose RS256 JWTs the gateway accepts besides API keys (e.g. https://cognito-idp.REGION.amazonaws.com/POOL_ID); empty: API keys only"
  type        = string
  default     = ""
}

variable "jwt_audience" {
  description = "Required audience of those JWTs (aud, or a Cognito access token's client_id)"
  type        = string
  default     = ""
}
