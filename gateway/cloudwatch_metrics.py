"""The gateway's open WebSocket sessions as a CloudWatch metric, for its target-tracking scaling policy.

Off unless ``ECHO_GATEWAY_METRICS_NAMESPACE`` is set (Terraform sets it on ECS; a local run publishes
nothing). Then every ``ECHO_GATEWAY_METRICS_INTERVAL_S`` each gateway process puts one datapoint
``<namespace>/ActiveSessions`` with the single dimension ``ServiceName``, which is exactly what
deploy/terraform reads: the scaling policy's ``Average`` is sessions per task, the dashboard's 1-minute
``Sum`` is sessions over all tasks (one datapoint per task per minute).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from gateway.config import GatewaySettings
from services.common.config import ConfigError

log = logging.getLogger("echo.gateway.metrics")

# Names the Terraform scaling policy, dashboard and IAM condition use (tests/deploy checks they agree).
METRIC_NAME = "ActiveSessions"
DIMENSION_NAME = "ServiceName"


class SessionMetricPublisher:
    """Puts the count of open sessions (``count()``) to CloudWatch at a fixed rate until stopped."""

    def __init__(self, settings: GatewaySettings, count: Callable[[], int]) -> None:
        if settings.metrics_interval_s <= 0:
            raise ConfigError(
                f"ECHO_GATEWAY_METRICS_INTERVAL_S={settings.metrics_interval_s}: must be above 0 seconds"
            )
        if not settings.metrics_service_name:
            raise ConfigError("ECHO_GATEWAY_METRICS_SERVICE_NAME is empty: the metric needs its ServiceName")
        self.namespace = settings.metrics_namespace
        self.service_name = settings.metrics_service_name
        self.interval_s = settings.metrics_interval_s
        self.count = count
        self.client: Any = None
        self._stack = AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            from services.common import aws

            self.client = await self._stack.enter_async_context(aws.client("cloudwatch"))
        except ImportError as e:
            raise ConfigError(
                f"ECHO_GATEWAY_METRICS_NAMESPACE is set but the AWS SDK is missing ({e}); "
                "install the aws extra: pip install 'echo-voice[gateway,aws]'"
            ) from None
        self._task = asyncio.create_task(self._run(), name="session-metric")
        log.info(
            "publishing %s/%s (%s=%s) every %g s",
            self.namespace,
            METRIC_NAME,
            DIMENSION_NAME,
            self.service_name,
            self.interval_s,
        )

    async def publish(self) -> int:
        """One datapoint with the count right now; returns it."""
        value = self.count()
        await self.client.put_metric_data(
            Namespace=self.namespace,
            MetricData=[
                {
                    "MetricName": METRIC_NAME,
                    "Dimensions": [{"Name": DIMENSION_NAME, "Value": self.service_name}],
                    "Value": float(value),
                    "Unit": "Count",
                }
            ],
        )
        return value

    async def _run(self) -> None:
        # Fixed rate, not fixed delay: the datapoints stay one interval apart however long a call takes,
        # so with a 60 s interval each task lands exactly one datapoint in each minute.
        next_at = time.monotonic()
        while True:
            try:
                await self.publish()
            except Exception as e:  # CloudWatch trouble must never reach the voice sessions
                log.warning("could not publish %s/%s: %s", self.namespace, METRIC_NAME, e)
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._stack.aclose()


@asynccontextmanager
async def publishing(
    settings: GatewaySettings, count: Callable[[], int]
) -> AsyncIterator[SessionMetricPublisher | None]:
    """Publish while inside the block when a namespace is configured; otherwise do nothing."""
    if not settings.metrics_namespace:
        yield None
        return
    publisher = SessionMetricPublisher(settings, count)
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()
