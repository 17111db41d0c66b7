# ---------------------------------------------------------------------------------------------------
# DynamoDB: on-demand, TTL on the `ttl` attribute, point-in-time recovery, encrypted with the CMK.
# ---------------------------------------------------------------------------------------------------
resource "aws_dynamodb_table" "conversations" {
  name                        = "${var.project}-conversations-${var.environment}"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "conversation_id"
  range_key                   = "timestamp"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "conversation_id"
    type = "S"
  }

  attribute {
    name = "timestamp"
    type = "S"
  }

  attribute {
    name = "session_id"
    type = "S"
  }

  attribute {
    name = "user_id"
    type = "S"
  }

  attribute {
    name = "last_timestamp"
    type = "S"
  }

  # A session's turns in time order.
  global_secondary_index {
    name            = "session_id-timestamp-index"
    hash_key        = "session_id"
    range_key       = "timestamp"
    projection_type = "ALL"
  }

  # A user's conversations, most recently active first: only the header item of each conversation
  # (services/storage/backends/aws_records.py) has last_timestamp, so the index holds nothing else.
  global_secondary_index {
    name            = "user_id-last_timestamp-index"
    hash_key        = "user_id"
    range_key       = "last_timestamp"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

resource "aws_dynamodb_table" "sessions" {
  name                        = "${var.project}-sessions-${var.environment}"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "session_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "session_id"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# API keys (by sha256, never the key) and daily usage per user (services/storage/backends/aws_users.py).
resource "aws_dynamodb_table" "users" {
  name                        = "${var.project}-users-${var.environment}"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  attribute {
    name = "key_sha256"
    type = "S"
  }

  # The gateway's authentication: an API key by the hash of the bearer token.
  global_secondary_index {
    name            = "key_sha256-index"
    hash_key        = "key_sha256"
    projection_type = "ALL"
  }

  # Usage items expire with the retention; key items carry no ttl.
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# ---------------------------------------------------------------------------------------------------
# Audio bucket: private, SSE-KMS, versioned, TLS only; expired after the retention (the objects are
# not DynamoDB items: this lifecycle rule, not TTL, is what removes them), to Standard-IA first when
# they live long enough for it.
# ---------------------------------------------------------------------------------------------------
resource "aws_s3_bucket" "audio" {
  bucket = "${local.name}-audio-${local.account_id}"
}

resource "aws_s3_bucket_public_access_block" "audio" {
  bucket                  = aws_s3_bucket.audio.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "audio" {
  bucket = aws_s3_bucket.audio.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audio" {
  bucket = aws_s3_bucket.audio.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "audio" {
  bucket = aws_s3_bucket.audio.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "audio" {
  bucket = aws_s3_bucket.audio.id

  rule {
    id     = "audio-to-ia-then-expire"
    status = "Enabled"
    filter {}

    dynamic "transition" {
      for_each = var.retention_days == 0 || var.retention_days > var.audio_ia_after_days ? [1] : []
      content {
        days          = var.audio_ia_after_days
        storage_class = "STANDARD_IA"
      }
    }

    # The same retention as the records' DynamoDB TTL (ECHO_STORAGE_RETENTION_DAYS); 0 keeps audio.
    dynamic "expiration" {
      for_each = var.retention_days > 0 ? [1] : []
      content {
        days = var.retention_days
      }
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.audio]
}

resource "aws_s3_bucket_logging" "audio" {
  bucket        = aws_s3_bucket.audio.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/audio/"
}

data "aws_iam_policy_document" "audio_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.audio.arn, "${aws_s3_bucket.audio.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "audio" {
  bucket = aws_s3_bucket.audio.id
  policy = data.aws_iam_policy_document.audio_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.audio]
}

# ---------------------------------------------------------------------------------------------------
# Log bucket: ALB access logs and S3 server access logs. ALB log delivery supports only SSE-S3.
# ---------------------------------------------------------------------------------------------------
data "aws_elb_service_account" "main" {}

resource "aws_s3_bucket" "logs" {
  bucket = "${local.name}-logs-${local.account_id}"
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-logs"
    status = "Enabled"
    filter {}

    expiration {
      days = 90
    }

    noncurrent_version_expiration {
      noncurrent_days = 7
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

data "aws_iam_policy_document" "logs_bucket" {
  statement {
    sid       = "AlbAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/alb/AWSLogs/${local.account_id}/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.main.arn]
    }
  }

  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/s3/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.logs]
}
