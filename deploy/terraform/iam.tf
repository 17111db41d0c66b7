# ---------------------------------------------------------------------------------------------------
# Execution role (shared): ECS pulls images and writes logs with it; the apps never see it.
# ---------------------------------------------------------------------------------------------------
data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# ---------------------------------------------------------------------------------------------------
# Task roles: one per service (created in modules/ecs_service); these are their only AWS permissions
# besides X-Ray writes for the tracing sidecar. Attached only when the service's backend needs them.
# ---------------------------------------------------------------------------------------------------

# stt: Amazon Transcribe streaming, and the stt/ prefix of the audio bucket for batch jobs.
data "aws_iam_policy_document" "stt_task" {
  statement {
    sid = "TranscribeStreaming"
    actions = [
      "transcribe:StartStreamTranscription",
      "transcribe:StartStreamTranscriptionWebSocket",
    ]
    # Transcribe streaming has no resource-level permissions.
    resources = ["*"]
  }

  statement {
    sid       = "BatchAudioPrefix"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.audio.arn}/stt/*"]
  }

  statement {
    sid       = "BatchAudioKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.aws_region}.amazonaws.com"]
    }
  }
}

# llm: invoke only the configured Bedrock models.
data "aws_iam_policy_document" "llm_task" {
  statement {
    sid     = "InvokeConfiguredModels"
    actions = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    resources = [
      for id in var.bedrock_model_ids : "arn:${local.partition}:bedrock:${local.bedrock_region}::foundation-model/${id}"
    ]
  }
}

# tts: Amazon Polly speech synthesis only.
data "aws_iam_policy_document" "tts_task" {
  statement {
    sid     = "PollySynthesize"
    actions = ["polly:SynthesizeSpeech"]
    # SynthesizeSpeech is authorised against lexicons; Echo's own account's only.
    resources = ["arn:${local.partition}:polly:${var.aws_region}:${local.account_id}:lexicon/*"]
  }

  statement {
    sid       = "PollyListVoices"
    actions   = ["polly:DescribeVoices"]
    resources = ["*"] # DescribeVoices takes no resource
  }
}

# storage: its two tables (and the session index), the audio bucket, and the key that encrypts them.
data "aws_iam_policy_document" "storage_task" {
  statement {
    sid = "Tables"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:Query",
      "dynamodb:BatchGetItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:ConditionCheckItem",
      "dynamodb:DescribeTable",
    ]
    resources = [
      aws_dynamodb_table.conversations.arn,
      "${aws_dynamodb_table.conversations.arn}/index/*",
      aws_dynamodb_table.sessions.arn,
    ]
  }

  statement {
    sid       = "AudioObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.audio.arn}/*"]
  }

  statement {
    sid       = "AudioBucketList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.audio.arn]
  }

  statement {
    sid       = "DataKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

# gateway: publish its active-session metric into the Echo namespace only.
data "aws_iam_policy_document" "gateway_task" {
  statement {
    sid       = "PublishSessionMetric"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["Echo"]
    }
  }
}

