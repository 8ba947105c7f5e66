"""A Faust agent that only counts: the ceiling Faust's per-record path sets on this machine.

Run by bench_pipeline.py as ``faust -A benchmarks.faust_ceiling worker`` with CEILING_TOPIC,
CEILING_EVENTS, CEILING_OUT, CEILING_DIR and CEILING_BOOTSTRAP set; it writes the rate and exits
when all events are taken.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import faust

from connectors.kafka.clients import faust_broker_settings

TOPIC, TOTAL = os.environ["CEILING_TOPIC"], int(os.environ["CEILING_EVENTS"])
app = faust.App(f"ceiling-{TOPIC}", **faust_broker_settings(os.environ["CEILING_BOOTSTRAP"]),
                store="memory://", web_enabled=False, key_serializer="raw", value_serializer="raw",
                consumer_auto_offset_reset="earliest", datadir=os.environ["CEILING_DIR"],
                stream_buffer_maxsize=8192)
topic = app.topic(TOPIC, key_type=bytes, value_type=bytes)
state = {"taken": 0, "first": 0.0}


@app.agent(topic)
async def count(stream: faust.StreamT) -> None:
    """Take micro-batches like the worker does, and do nothing else."""
    async for batch in stream.take_events(512, within=0.02):
        state["first"] = state["first"] or time.monotonic()
        state["taken"] += len(batch)
        if state["taken"] >= TOTAL:
            seconds = time.monotonic() - state["first"]
            Path(os.environ["CEILING_OUT"]).write_text(json.dumps(
                {"events": state["taken"], "seconds": round(seconds, 2),
                 "events_per_s": round(state["taken"] / seconds, 1)}))
            os.kill(os.getpid(), 15)
