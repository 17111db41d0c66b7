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

# stt (services/stt/backends/transcribe.py): Transcribe streaming; for long audio a batch job whose input
# and result live under transcribe-batch/ in the audio bucket. Transcribe reads the input and writes the
# result with the caller's permissions, so this role needs the S3 (and KMS) rights on that prefix.
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
    sid     = "TranscribeBatchStart"
    actions = ["transcribe:StartTranscriptionJob"]
    # StartTranscriptionJob has no resource type; its condition keys pin where the result may go.
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "transcribe:OutputBucketName"
      values   = [aws_s3_bucket.audio.bucket]
    }
    condition {
      test     = "StringLike"
      variable = "transcribe:OutputKey"
      values   = ["${local.transcribe_batch_prefix}/*"]
    }
  }

  statement {
    sid       = "TranscribeBatchPoll"
    actions   = ["transcribe:GetTranscriptionJob"]
    resources = ["arn:${local.partition}:transcribe:${var.aws_region}:${local.account_id}:transcription-job/echo-*"]
  }

  statement {
    sid       = "BatchAudioPrefix"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.audio.arn}/${local.transcribe_batch_prefix}/*"]
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

# llm (services/llm/backends/bedrock.py): ConverseStream (authorised as InvokeModelWithResponseStream)
# on the configured models only, and ListFoundationModels for the model list.
data "aws_iam_policy_document" "llm_task" {
  statement {
    sid     = "InvokeConfiguredModels"
    actions = ["bedrock:InvokeModelWithResponseStream"]
    resources = [
      for id in var.bedrock_model_ids : "arn:${local.partition}:bedrock:${local.bedrock_region}::foundation-model/${id}"
    ]
  }

  statement {
    sid       = "ListModels"
    actions   = ["bedrock:ListFoundationModels"]
    resources = ["*"] # ListFoundationModels takes no resource
  }
}

# tts (services/tts/backends/polly.py): SynthesizeSpeech and DescribeVoices. Polly's permissions reference
# lists "*" for SynthesizeSpeech and documents the replacement that keeps it to one region:
# arn:aws:polly:<region>:<account>:lexicon/* (Echo uses no lexicons; this names only its own account's).
data "aws_iam_policy_document" "tts_task" {
  statement {
    sid       = "PollySynthesize"
    actions   = ["polly:SynthesizeSpeech"]
    resources = ["arn:${local.partition}:polly:${var.aws_region}:${local.account_id}:lexicon/*"]
  }

  statement {
    sid       = "PollyListVoices"
    actions   = ["polly:DescribeVoices"]
    resources = ["*"] # DescribeVoices takes no resource
  }
}

# storage (services/storage/backends/aws*.py): its three tables and their indexes, the audio bucket,
# and the key that encrypts them. Exactly the calls the backend makes: GetItem/PutItem/UpdateItem/
# DeleteItem/Query, TransactWriteItems (a new turn with its header's count: authorised as that PutItem
# and UpdateItem) and DescribeTable (Table.load at start), never Scan: a user's conversations are a
# Query on the user index, keys a Query on the key-hash index; Put/Get/Head/DeleteObject (HeadObject
# and presigned GetObject URLs are authorised as GetObject), ListObjectsV2 and HeadBucket (as
# ListBucket); SSE-KMS data keys. `echo-voice aws init` (table/bucket creation) is an operator command;
# Terraform creates these here.
data "aws_iam_policy_document" "storage_task" {
  statement {
    sid = "Tables"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:Query",
      "dynamodb:DescribeTable",
    ]
    resources = [
      aws_dynamodb_table.conversations.arn,
      aws_dynamodb_table.sessions.arn,
      aws_dynamodb_table.users.arn,
    ]
  }

  statement {
    sid     = "Indexes"
    actions = ["dynamodb:Query"]
    resources = [
      "${aws_dynamodb_table.conversations.arn}/index/*",
      "${aws_dynamodb_table.users.arn}/index/*",
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

# gateway (gateway/cloudwatch_metrics.py): publish its active-session metric into the Echo namespace only.
# PutMetricData has no resource type; the namespace condition is the scope.
data "aws_iam_policy_document" "gateway_task" {
  statement {
    sid       = "PublishSessionMetric"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [local.session_metric.namespace]
    }
  }
}


# ---------------------------------------------------------------------------------------------------
# Execution role: read the service credential (secrets.tf), and only it, to inject ECHO_SERVICE_TOKEN
# into the tasks; the secret is encrypted with the stack key, decrypted through Secrets Manager only.
# ---------------------------------------------------------------------------------------------------
data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "ServiceToken"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.service_token.arn]
  }

  statement {
    sid       = "ServiceTokenKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.aws_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "service-token"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}
