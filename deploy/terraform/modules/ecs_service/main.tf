# One Echo component on Fargate: task role, log group, task definition (app + ADOT sidecar), service
# with Service Connect, and its own Application Auto Scaling target and policies.

locals {
  full_name = "${var.name_prefix}-${var.name}"

  # Sorted so the task definition does not change when the map's order does.
  environment = [
    for key in sort(keys(merge(var.environment, local.telemetry_environment))) :
    { name = key, value = merge(var.environment, local.telemetry_environment)[key] }
  ]

  # Secrets Manager values ECS injects as environment variables (the execution role reads them).
  secrets = [for key in sort(keys(var.secrets)) : { name = key, valueFrom = var.secrets[key] }]

  # The sidecar listens on localhost in the task's network namespace (awsvpc).
  telemetry_environment = {
    OTEL_EXPORTER_OTLP_ENDPOINT = "http://127.0.0.1:4317"
    OTEL_SERVICE_NAME           = var.name
    OTEL_RESOURCE_ATTRIBUTES    = "service.namespace=${var.name_prefix}"
  }

  app_container = {
    name      = var.name
    image     = var.image
    essential = true
    portMappings = [
      {
        name          = var.port_name
        containerPort = var.port
        protocol      = "tcp"
        appProtocol   = var.app_protocol
      }
    ]
    environment            = local.environment
    secrets                = local.secrets
    readonlyRootFilesystem = true
    # Writable scratch space: the root filesystem is read-only.
    mountPoints = [
      { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }
    ]
    healthCheck = {
      command     = var.health_check_command
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = var.health_check_start_period
    }
    stopTimeout = var.stop_timeout
    dependsOn = [
      { containerName = "adot-collector", condition = "START" }
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.this.name
        "awslogs-region"        = var.aws_region
        "awslogs-stream-prefix" = var.name
      }
    }
  }

  # Traces: the collector takes OTLP on 127.0.0.1:4317 and forwards it to X-Ray. The app gets the OTEL_*
  # variables above but emits no spans yet (no OpenTelemetry in Echo's code), so nothing arrives today.
  adot_container = {
    name                   = "adot-collector"
    image                  = var.adot_collector_image
    essential              = false
    command                = ["--config=/etc/ecs/ecs-xray.yaml"]
    memoryReservation      = 64
    readonlyRootFilesystem = true
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.this.name
        "awslogs-region"        = var.aws_region
        "awslogs-stream-prefix" = "adot"
      }
    }
  }

  container_definitions = [local.app_container, local.adot_container]
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/ecs/${local.full_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "task" {
  name               = "${local.full_name}-task"
  description        = "Echo ${var.name}: only the AWS calls this service makes"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

resource "aws_iam_role_policy" "service" {
  count = var.task_policy_enabled ? 1 : 0

  name   = "${var.name}-aws-apis"
  role   = aws_iam_role.task.id
  policy = var.task_policy_json
}

# The ADOT sidecar runs with the task role; X-Ray's write APIs take no resource ARNs.
data "aws_iam_policy_document" "telemetry" {
  statement {
    sid = "XRayWrite"
    actions = [
      "xray:PutTraceSegments",
      "xray:PutTelemetryRecords",
      "xray:GetSamplingRules",
      "xray:GetSamplingTargets",
      "xray:GetSamplingStatisticSummaries",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "telemetry" {
  name   = "xray-traces"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.telemetry.json
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.full_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode(local.container_definitions)

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }
}

resource "aws_ecs_service" "this" {
  name                               = var.name
  cluster                            = var.cluster_arn
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.min_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  propagate_tags                     = "SERVICE"
  enable_execute_command             = false
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.target_group_arn == null ? null : var.health_check_start_period

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [var.security_group_id]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = var.target_group_arn == null ? [] : [var.target_group_arn]
    content {
      target_group_arn = load_balancer.value
      container_name   = var.name
      container_port   = var.port
    }
  }

  service_connect_configuration {
    enabled   = true
    namespace = var.service_connect_namespace_arn

    dynamic "service" {
      for_each = var.service_connect_server ? [var.name] : []
      content {
        port_name      = var.port_name
        discovery_name = service.value
        client_alias {
          dns_name = service.value
          port     = var.port
        }
      }
    }

    log_configuration {
      log_driver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.this.name
        "awslogs-region"        = var.aws_region
        "awslogs-stream-prefix" = "service-connect"
      }
    }
  }

  # Application Auto Scaling owns the task count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }
}

# ---------------------------------------------------------------------------------------------------
# Scaling: every service has a target; policies are target tracking (scale out when any policy asks,
# scale in only when all agree).
# ---------------------------------------------------------------------------------------------------
resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${local.full_name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target
    scale_out_cooldown = 60
    # Scale in slowly: a model-serving task takes a while to start again.
    scale_in_cooldown = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  count = var.alb_resource_label == null ? 0 : 1

  name               = "${local.full_name}-alb-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.alb_requests_per_target
    scale_out_cooldown = 60
    scale_in_cooldown  = 600

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = var.alb_resource_label
    }
  }
}

# Active WebSocket sessions per task, from the metric the gateway publishes (Echo/ActiveSessions,
# dimension ServiceName). Average across tasks = sessions per task.
resource "aws_appautoscaling_policy" "sessions" {
  count = var.sessions_per_task == null ? 0 : 1

  name               = "${local.full_name}-sessions"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.sessions_per_task == null ? 0 : var.sessions_per_task
    scale_out_cooldown = 60
    scale_in_cooldown  = 600

    customized_metric_specification {
      namespace   = "Echo"
      metric_name = "ActiveSessions"
      statistic   = "Average"

      dimensions {
        name  = "ServiceName"
        value = "${var.name_prefix}-${var.name}"
      }
    }
  }
}
