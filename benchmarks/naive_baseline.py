"""The naive baseline of the pipeline benchmark: one event at a time, torch eager, no batching."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from confluent_kafka import Consumer

from connectors.kafka.clients import consumer_config
from connectors.kafka.producer import RecordProducer
from model.artifact import load_artifact
from model.network import SASRec
from schemas import default_codec


class NaiveLoop:
    """consume → decode → update history → score this one user with torch → produce."""

    def __init__(self, bootstrap: str, env: dict[str, str], model_dir: Path, k: int = 20) -> None:
        artifact = load_artifact(model_dir)
        torch.set_num_threads(2)
        self.model = SASRec(artifact.config)
        self.model.load_state_dict(torch.load(artifact.file("weights.pt"), map_location="cpu"))
        self.model.eval()
        self.index = {item: i for i, item in enumerate(artifact.item_ids)}
        self.items = artifact.item_ids
        self.max_len, self.k = artifact.config.max_len, k
        self.codec = default_codec()
        self.out_topic = env["STREAMREC_RECOMMENDATIONS_TOPIC"]
        # Committing as it reads (librdkafka's own default), as a naive consumer does.
        self.consumer = Consumer(consumer_config(
            bootstrap, env["STREAMREC_APP_ID"],
            **{"auto.offset.reset": "earliest", "enable.auto.commit": True}))
        self.consumer.subscribe([env["STREAMREC_EVENTS_TOPIC"]])
        self.producer = RecordProducer(bootstrap)
        self.history: dict[str, list[int]] = {}
        self.stop = False

    def score(self, seq: list[int]) -> list[tuple[str, float]]:
        """Top-k of one user with torch eager, the user's items excluded."""
        ids = torch.tensor([[0] * (self.max_len - len(seq)) + seq[-self.max_len :]])
        with torch.no_grad():
            user = self.model.user_vectors(ids, torch.zeros((1, 1), dtype=torch.long))
            scores = user @ self.model.item_vectors().T  # (1, N+1)
            scores[0, 0] = float("-inf")
            scores[0, seq] = float("-inf")
            top = scores.topk(self.k)
        return [
            (self.items[i], float(s)) for s, i in zip(top.values[0], top.indices[0], strict=True)
        ]

    def handle(self, msg) -> None:
        event = self.codec.decode("user_event", msg.value())
        seq = self.history.setdefault(event["user_id"], [])
        if event["type"] == "click" and event["item_id"] in self.index:
            seq.append(self.index[event["item_id"]])
        items = self.score(seq) if seq else []
        record = {
            "user_id": event["user_id"],
            "items": [{"item_id": i, "score": s} for i, s in items],
            "model_version": "naive",
            "strategy": "model",
            "cause_event_id": event["event_id"],
            "cause_event_time": event["timestamp"],
            "cause_ingest_time": msg.timestamp()[1],
            "produced_at": int(time.time() * 1000),
        }
        self.producer.produce(
            self.out_topic, msg.key(), self.codec.encode("recommendation", record)
        )

    def run(self, limit: int, budget_s: float) -> tuple[int, float]:
        """Process up to ``limit`` events or ``budget_s`` seconds; returns (events, seconds)."""
        done, first = 0, None
        deadline = time.monotonic() + budget_s
        while done < limit and time.monotonic() < deadline and not self.stop:
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            first = first or time.monotonic()
            self.handle(msg)
            done += 1
        seconds = time.monotonic() - (first or time.monotonic())
        self.producer.flush()
        self.consumer.close()
        return done, max(seconds, 1e-9)
