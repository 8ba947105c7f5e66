"""The worker's HTTP endpoints, served by Faust's web server on the worker's web port.

    GET  /users/{id}/recommendations   the user's latest recommendation (routed to its worker)
    GET  /users/{id}/state             the user's state (routed likewise)
    GET  /health                       200 while the worker makes progress, 503 once stalled
    GET  /metrics                      Prometheus text
    GET  /model, POST /model {"path"}  the model served; hot-swap to another artifact

A user's requests are answered by the worker that holds the user's partition: Faust's
``table_route`` forwards them there.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas import default_codec
from streams.faust_adapter import aiokafka_producer
from streams.output import TableStore
from streams.user_state import UserState

ROUTE_METADATA_S = 5.0  # how long a user lookup waits for the table's partition metadata


def _routable(app: faust.App, table: faust.Table) -> Callable[[Any], Any]:
    """Make sure Faust's router can find the partition of a key before it routes a request.

    Faust routes a table request by the partition its aiokafka producer computes from that
    producer's metadata; the worker produces through librdkafka, so after a rebalance that
    metadata may hold no entry for the table's changelog and routing failed with a 500
    (``'NoneType' object is not iterable``). Asking for the topic's partitions fills it in.
    """
    topic = table.changelog_topic.get_topic_name()

    def decorate(fun: Any) -> Any:
        @functools.wraps(fun)
        async def handler(view: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            producer = aiokafka_producer(app)
            try:
                await asyncio.wait_for(producer.partitions_for(topic), ROUTE_METADATA_S)
            except Exception as exc:  # noqa: BLE001 - the cluster is unreachable or slow
                return view.json({"error": f"cannot route the request yet: the partitions of "
                                           f"{topic} are unknown ({exc or type(exc).__name__})"},
                                 status=503)
            return await fun(view, request, *args, **kwargs)

        return handler

    return decorate


def register_views(app: faust.App, worker: Any, users: TableStore, latest: TableStore) -> None:
    """The worker's HTTP endpoints (``worker``: the app's ``Worker``: metrics, scorer, watchdog)."""
    codec = default_codec()

    @app.page("/users/{user_id}/recommendations")
    @_routable(app, latest.table)
    @app.table_route(table=latest.table, match_info="user_id")
    async def recommendations(web: Any, request: Any, user_id: str) -> Any:
        value = latest.find(user_id)
        if value is None:
            return web.json({"error": f"no recommendation for user {user_id!r} yet"},
                            status=404)
        return web.json(codec.decode("recommendation", value))

    @app.page("/users/{user_id}/state")
    @_routable(app, users.table)
    @app.table_route(table=users.table, match_info="user_id")
    async def state(web: Any, request: Any, user_id: str) -> Any:
        value = users.find(user_id)
        if value is None:
            return web.json({"error": f"no state for user {user_id!r}"}, status=404)
        return web.json(UserState.from_bytes(value).__dict__)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """Liveness: 200 while the worker makes progress, 503 once the watchdog saw a stall."""
        report = worker.watchdog.report() if worker.watchdog else {"status": "ok"}
        return web.json(report, status=200 if report["status"] == "ok" else 503)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(worker.metrics.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/model")
    class ModelView(faust.web.View):
        """GET: the model being served. POST {"path": DIR}: hot-swap to that artifact."""

        async def get(self, request: Any) -> Any:
            return self.json(worker.scorer.describe())

        async def post(self, request: Any) -> Any:
            body = json.loads(await request.text() or "{}")
            loop = asyncio.get_running_loop()
            try:
                version = await loop.run_in_executor(None, worker.scorer.swap, body.get("path"))
            except Exception as exc:  # noqa: BLE001 - reported to the operator, old model kept
                return self.json({"error": str(exc)}, status=400)
            return self.json({"version": version})
