data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
# Zones by name (a-f of the region), so the set cannot grow under us when AWS adds a zone.
data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "zone-name"
    values = [for letter in ["a", "b", "c", "d", "e", "f"] : "${var.aws_region}${letter}"]
  }
}

locals {
  name           = "${var.project}-${var.environment}"
  account_id     = data.aws_caller_identity.current.account_id
  partition      = data.aws_partition.current.partition
  bedrock_region = var.bedrock_region != "" ? var.bedrock_region : var.aws_region

  # gRPC ports match `make run` and the images' defaults.
  grpc_ports   = { stt = 50051, llm = 50052, tts = 50053, storage = 50054 }
  gateway_port = 8080

  # Where the stt service's Transcribe batch jobs put their input and result (services/stt/backends/
  # transcribe.py); its task role may touch only this prefix of the audio bucket.
  transcribe_batch_prefix = "transcribe-batch"

  # The gateway's session metric (gateway/cloudwatch_metrics.py): the gateway publishes it, the scaling
  # policy, the dashboard and the gateway's IAM condition read it under exactly these names.
  session_metric = {
    namespace    = "Echo"
    name         = "ActiveSessions"
    service_name = "${local.name}-gateway"
  }

  # ECS gives a stopping gateway this long between SIGTERM and SIGKILL (Fargate's maximum); the gateway
  # lets its sessions finish (save their last turns) for 10 s less, so it exits before the kill.
  gateway_stop_timeout     = 120
  gateway_shutdown_timeout = local.gateway_stop_timeout - 10

  # Images for AWS backends carry no model weights and are pushed as "<tag>-aws".
  image_tags = {
    gateway = var.image_tag
    stt     = var.stt_backend == "whisper" ? var.image_tag : "${var.image_tag}-aws"
    llm     = var.llm_backend == "llamacpp" ? var.image_tag : "${var.image_tag}-aws"
    tts     = var.tts_backend == "piper" ? var.image_tag : "${var.image_tag}-aws"
    storage = var.image_tag
  }
}

module "network" {
  source = "./modules/network"

  name               = local.name
  cidr               = var.vpc_cidr
  azs                = slice(data.aws_availability_zones.available.names, 0, var.az_count)
  single_nat_gateway = var.single_nat_gateway
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.main.arn
}

# One customer-managed key for data at rest: DynamoDB, the audio bucket, logs, SNS, ECR.
resource "aws_kms_key" "main" {
  description             = "${local.name}: data at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  # Key policy: the account administers the key (IAM policies then decide who uses it); the AWS
  # services that encrypt with it are named. In a key policy, Resource "*" means this key.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.aws_region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:*"
          }
        }
      },
      {
        Sid       = "AlarmAndBudgetNotifications"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "main" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.main.key_id
}

resource "aws_ecs_cluster" "main" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# Service Connect: the gateway reaches stt:50051, llm:50052... through these names.
resource "aws_service_discovery_http_namespace" "main" {
  name        = "${local.name}.internal"
  description = "Service Connect names for Echo's gRPC services"
}

module "stt" {
  source = "./modules/ecs_service"

  name                 = "stt"
  name_prefix          = local.name
  aws_region           = var.aws_region
  image                = "${aws_ecr_repository.service["stt"].repository_url}:${local.image_tags.stt}"
  cpu                  = var.services.stt.cpu
  memory               = var.services.stt.memory
  port                 = local.grpc_ports.stt
  port_name            = "grpc"
  app_protocol         = "grpc"
  health_check_command = ["CMD", "python", "-m", "services.common.healthcheck", "127.0.0.1:50051"]
  environment = {
    ECHO_STT_HOST    = "0.0.0.0"
    ECHO_STT_PORT    = "50051"
    ECHO_STT_SERVICE = var.stt_backend
    ECHO_STT_MODEL   = var.stt_model
    AWS_REGION       = var.aws_region
    S3_BUCKET_AUDIO  = aws_s3_bucket.audio.bucket
  }

  task_policy_enabled = var.stt_backend == "transcribe"
  task_policy_json    = data.aws_iam_policy_document.stt_task.json

  cluster_arn                   = aws_ecs_cluster.main.arn
  cluster_name                  = aws_ecs_cluster.main.name
  execution_role_arn            = aws_iam_role.execution.arn
  secrets                       = local.service_secrets
  subnet_ids                    = module.network.private_subnet_ids
  security_group_id             = aws_security_group.service["stt"].id
  service_connect_namespace_arn = aws_service_discovery_http_namespace.main.arn
  service_connect_server        = true
  min_count                     = var.services.stt.min_count
  max_count                     = var.services.stt.max_count
  cpu_target                    = var.services.stt.cpu_target
  log_retention_days            = var.log_retention_days
  kms_key_arn                   = aws_kms_key.main.arn
  adot_collector_image          = var.adot_collector_image
}

module "llm" {
  source = "./modules/ecs_service"

  name                 = "llm"
  name_prefix          = local.name
  aws_region           = var.aws_region
  image                = "${aws_ecr_repository.service["llm"].repository_url}:${local.image_tags.llm}"
  cpu                  = var.services.llm.cpu
  memory               = var.services.llm.memory
  port                 = local.grpc_ports.llm
  port_name            = "grpc"
  app_protocol         = "grpc"
  health_check_command = ["CMD", "python", "-m", "services.common.healthcheck", "127.0.0.1:50052"]
  environment = {
    ECHO_LLM_HOST    = "0.0.0.0"
    ECHO_LLM_PORT    = "50052"
    ECHO_LLM_SERVICE = var.llm_backend
    ECHO_LLM_MODEL   = var.llm_model
    AWS_REGION       = var.aws_region
    BEDROCK_MODEL_ID = var.bedrock_model_ids[0]
    BEDROCK_REGION   = local.bedrock_region
  }

  task_policy_enabled = var.llm_backend == "bedrock"
  task_policy_json    = data.aws_iam_policy_document.llm_task.json

  cluster_arn                   = aws_ecs_cluster.main.arn
  cluster_name                  = aws_ecs_cluster.main.name
  execution_role_arn            = aws_iam_role.execution.arn
  secrets                       = local.service_secrets
  subnet_ids                    = module.network.private_subnet_ids
  security_group_id             = aws_security_group.service["llm"].id
  service_connect_namespace_arn = aws_service_discovery_http_namespace.main.arn
  service_connect_server        = true
  min_count                     = var.services.llm.min_count
  max_count                     = var.services.llm.max_count
  cpu_target                    = var.services.llm.cpu_target
  log_retention_days            = var.log_retention_days
  kms_key_arn                   = aws_kms_key.main.arn
  adot_collector_image          = var.adot_collector_image
}

module "tts" {
  source = "./modules/ecs_service"

  name                 = "tts"
  name_prefix          = local.name
  aws_region           = var.aws_region
  image                = "${aws_ecr_repository.service["tts"].repository_url}:${local.image_tags.tts}"
  cpu                  = var.services.tts.cpu
  memory               = var.services.tts.memory
  port                 = local.grpc_ports.tts
  port_name            = "grpc"
  app_protocol         = "grpc"
  health_check_command = ["CMD", "python", "-m", "services.common.healthcheck", "127.0.0.1:50053"]
  environment = {
    ECHO_TTS_HOST    = "0.0.0.0"
    ECHO_TTS_PORT    = "50053"
    ECHO_TTS_SERVICE = var.tts_backend
    ECHO_TTS_VOICE   = var.tts_voice
    AWS_REGION       = var.aws_region
    POLLY_VOICE_ID   = var.polly_voice_id
    POLLY_ENGINE     = var.polly_engine
  }

  task_policy_enabled = var.tts_backend == "polly"
  task_policy_json    = data.aws_iam_policy_document.tts_task.json

  cluster_arn                   = aws_ecs_cluster.main.arn
  cluster_name                  = aws_ecs_cluster.main.name
  execution_role_arn            = aws_iam_role.execution.arn
  secrets                       = local.service_secrets
  subnet_ids                    = module.network.private_subnet_ids
  security_group_id             = aws_security_group.service["tts"].id
  service_connect_namespace_arn = aws_service_discovery_http_namespace.main.arn
  service_connect_server        = true
  min_count                     = var.services.tts.min_count
  max_count                     = var.services.tts.max_count
  cpu_target                    = var.services.tts.cpu_target
  log_retention_days            = var.log_retention_days
  kms_key_arn                   = aws_kms_key.main.arn
  adot_collector_image          = var.adot_collector_image
}

module "storage" {
  source = "./modules/ecs_service"

  name                 = "storage"
  name_prefix          = local.name
  aws_region           = var.aws_region
  image                = "${aws_ecr_repository.service["storage"].repository_url}:${local.image_tags.storage}"
  cpu                  = var.services.storage.cpu
  memory               = var.services.storage.memory
  port                 = local.grpc_ports.storage
  port_name            = "grpc"
  app_protocol         = "grpc"
  health_check_command = ["CMD", "python", "-m", "services.common.healthcheck", "127.0.0.1:50054"]
  # Fargate disks are ephemeral, so on ECS storage always uses DynamoDB + S3.
  environment = {
    ECHO_STORAGE_HOST            = "0.0.0.0"
    ECHO_STORAGE_PORT            = "50054"
    ECHO_STORAGE_SERVICE         = "aws"
    AWS_REGION                   = var.aws_region
    DYNAMODB_TABLE_CONVERSATIONS = aws_dynamodb_table.conversations.name
    DYNAMODB_TABLE_SESSIONS      = aws_dynamodb_table.sessions.name
    DYNAMODB_TABLE_USERS         = aws_dynamodb_table.users.name
    S3_BUCKET_AUDIO              = aws_s3_bucket.audio.bucket
    ECHO_STORAGE_RETENTION_DAYS  = tostring(var.retention_days)
    # SSE-KMS with Echo's key on every object the service writes (the backend's default is SSE-S3, and a
    # PutObject that names an algorithm overrides the bucket's KMS default).
    ECHO_STORAGE_S3_ENCRYPTION = "aws:kms"
    ECHO_STORAGE_KMS_KEY_ID    = aws_kms_key.main.arn
  }

  task_policy_enabled = true
  task_policy_json    = data.aws_iam_policy_document.storage_task.json

  cluster_arn                   = aws_ecs_cluster.main.arn
  cluster_name                  = aws_ecs_cluster.main.name
  execution_role_arn            = aws_iam_role.execution.arn
  secrets                       = local.service_secrets
  subnet_ids                    = module.network.private_subnet_ids
  security_group_id             = aws_security_group.service["storage"].id
  service_connect_namespace_arn = aws_service_discovery_http_namespace.main.arn
  service_connect_server        = true
  min_count                     = var.services.storage.min_count
  max_count                     = var.services.storage.max_count
  cpu_target                    = var.services.storage.cpu_target
  log_retention_days            = var.log_retention_days
  kms_key_arn                   = aws_kms_key.main.arn
  adot_collector_image          = var.adot_collector_image
}

module "gateway" {
  source = "./modules/ecs_service"

  name                 = "gateway"
  name_prefix          = local.name
  aws_region           = var.aws_region
  image                = "${aws_ecr_repository.service["gateway"].repository_url}:${local.image_tags.gateway}"
  cpu                  = var.services.gateway.cpu
  memory               = var.services.gateway.memory
  port                 = local.gateway_port
  port_name            = "http"
  app_protocol         = "http"
  health_check_command = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
  environment = {
    ECHO_GATEWAY_HOST = "0.0.0.0"
    ECHO_GATEWAY_PORT = "8080"
    ECHO_STT_ADDR     = "stt:50051"
    ECHO_LLM_ADDR     = "llm:50052"
    ECHO_TTS_ADDR     = "tts:50053"
    ECHO_STORAGE_ADDR = "storage:50054"
    AWS_REGION        = var.aws_region
    # Publish the open-session count every minute (the scaling policy and dashboard read 1-minute data).
    ECHO_GATEWAY_METRICS_NAMESPACE    = local.session_metric.namespace
    ECHO_GATEWAY_METRICS_SERVICE_NAME = local.session_metric.service_name
    ECHO_GATEWAY_METRICS_INTERVAL_S   = "60"
    ECHO_GATEWAY_SHUTDOWN_TIMEOUT_S   = tostring(local.gateway_shutdown_timeout)
    # The names the gateway answers to (a request for any other Host is refused: DNS rebinding) and the
    # web app's origins allowed to open a WebSocket (gateway/guard.py).
    ECHO_GATEWAY_ALLOWED_HOSTS   = local.api_host
    ECHO_GATEWAY_ALLOWED_ORIGINS = join(",", [for host in local.web_hosts : "https://${host}"])
    # OIDC bearer tokens (e.g. a Cognito user pool) besides Echo's API keys; empty: API keys only.
    ECHO_GATEWAY_JWT_ISSUER   = var.jwt_issuer
    ECHO_GATEWAY_JWT_AUDIENCE = var.jwt_audience
  }
  # Open WebSocket sessions get this long to finish when a task is stopped (ECS caps stopTimeout at 120 s;
  # the ALB's deregistration delay drains them for longer before the stop signal).
  stop_timeout = local.gateway_stop_timeout

  task_policy_enabled = true
  task_policy_json    = data.aws_iam_policy_document.gateway_task.json

  cluster_arn                   = aws_ecs_cluster.main.arn
  cluster_name                  = aws_ecs_cluster.main.name
  execution_role_arn            = aws_iam_role.execution.arn
  secrets                       = local.service_secrets
  subnet_ids                    = module.network.private_subnet_ids
  security_group_id             = aws_security_group.gateway.id
  service_connect_namespace_arn = aws_service_discovery_http_namespace.main.arn
  service_connect_server        = false
  target_group_arn              = aws_lb_target_group.gateway.arn
  min_count                     = var.services.gateway.min_count
  max_count                     = var.services.gateway.max_count
  cpu_target                    = var.services.gateway.cpu_target
  alb_resource_label            = "${aws_lb.main.arn_suffix}/${aws_lb_target_group.gateway.arn_suffix}"
  alb_requests_per_target       = var.gateway_requests_per_target
  sessions_per_task             = var.gateway_sessions_per_task
  log_retention_days            = var.log_retention_days
  kms_key_arn                   = aws_kms_key.main.arn
  adot_collector_image          = var.adot_collector_image

  # The ALB listener must exist before a service can register targets.
  depends_on = [aws_lb_listener.https]
}

locals {
  api_host  = var.domain_name != "" ? var.domain_name : aws_lb.main.dns_name
  web_hosts = concat([aws_cloudfront_distribution.web.domain_name], var.web_aliases)
}
