# The service credential (services/common/service_auth.py): a shared secret every gRPC call between
# the gateway and the four services carries; a call without it is refused UNAUTHENTICATED. Terraform
# generates it with Secrets Manager's own generator as an ephemeral value and writes it write-only, so
# the token is in neither the plan nor the state. ECS injects it into every task as ECHO_SERVICE_TOKEN.
ephemeral "aws_secretsmanager_random_password" "service_token" {
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "service_token" {
  name        = "${local.name}/service-token"
  description = "Echo: the credential the gateway and the gRPC services present to each other"
  kms_key_id  = aws_kms_key.main.arn
}

resource "aws_secretsmanager_secret_version" "service_token" {
  secret_id                = aws_secretsmanager_secret.service_token.id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.service_token.random_password
  secret_string_wo_version = var.service_token_version
}

locals {
  # Every task's secrets (modules/ecs_service): the version's ARN, so tasks start only once it exists.
  service_secrets = {
    ECHO_SERVICE_TOKEN = aws_secretsmanager_secret_version.service_token.arn
  }
}
