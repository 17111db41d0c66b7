# Traffic allowed: internet -> ALB:443 -> gateway:8080 -> each service's gRPC port. Tasks leave only on
# 443 (AWS APIs, ECR) through NAT.

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "Echo ALB: HTTPS in, gateway out"
  vpc_id      = module.network.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.allowed_ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS and WSS from clients"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_gateway" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To gateway tasks"
  referenced_security_group_id = aws_security_group.gateway.id
  ip_protocol                  = "tcp"
  from_port                    = local.gateway_port
  to_port                      = local.gateway_port
}

resource "aws_security_group" "gateway" {
  name        = "${local.name}-gateway"
  description = "Echo gateway tasks: from the ALB only"
  vpc_id      = module.network.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "gateway_from_alb" {
  security_group_id            = aws_security_group.gateway.id
  description                  = "HTTP and WebSocket from the ALB"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.gateway_port
  to_port                      = local.gateway_port
}

resource "aws_vpc_security_group_egress_rule" "gateway_to_service" {
  for_each = local.grpc_ports

  security_group_id            = aws_security_group.gateway.id
  description                  = "gRPC to ${each.key}"
  referenced_security_group_id = aws_security_group.service[each.key].id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_egress_rule" "gateway_https" {
  security_group_id = aws_security_group.gateway.id
  description       = "AWS APIs and ECR over HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_security_group" "service" {
  for_each = local.grpc_ports

  name        = "${local.name}-${each.key}"
  description = "Echo ${each.key} tasks: gRPC from the gateway only"
  vpc_id      = module.network.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "service_from_gateway" {
  for_each = local.grpc_ports

  security_group_id            = aws_security_group.service[each.key].id
  description                  = "gRPC from the gateway"
  referenced_security_group_id = aws_security_group.gateway.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_egress_rule" "service_https" {
  for_each = local.grpc_ports

  security_group_id = aws_security_group.service[each.key].id
  description       = "AWS APIs and ECR over HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}
