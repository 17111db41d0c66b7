terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 6.0"
    }
  }

  # State: configure a remote backend for real use, e.g.
  #   terraform init -backend-config="bucket=my-tf-state" -backend-config="key=echo/terraform.tfstate" \
  #     -backend-config="region=us-east-1"
  # after uncommenting:
  # backend "s3" {}
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Project = var.project, Environment = var.environment, ManagedBy = "terraform" }, var.tags)
  }
}
