variable "name" {
  description = "Name prefix."
  type        = string
}

variable "cidr" {
  description = "VPC CIDR."
  type        = string
}

variable "azs" {
  description = "Availability zones, one public and one private subnet in each."
  type        = list(string)
}

variable "single_nat_gateway" {
  description = "One NAT gateway shared by all zones."
  type        = bool
}

variable "log_retention_days" {
  description = "Retention of the VPC flow log group."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key for the flow log group."
  type        = string
}
