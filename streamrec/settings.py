"""The one typed settings object of streamrec, read from ``STREAMREC_*`` environment variables.

Read it once at the edge (the CLI, the worker's entry point) and pass plain values down:
``model/``, ``schemas/`` and ``connectors/`` never read the environment themselves.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as UnparsableSetting

from streamrec.errors import ConfigError

Cluster = Literal["private", "public"]


class Settings(BaseSettings):
    """Every knob of streamrec; each field is ``STREAMREC_<FIELD NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", frozen=True, extra="forbid")

    # --- local clusters -------------------------------------------------------------------
    data_dir: Path = Field(Path("var"), description="Broker data, logs, pid files, worker state.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "streamrec",
        description="Downloaded Kafka jars (shared by every checkout on the machine).",
    )
    kafka_version: str = Field("4.4.0", description="Apache Kafka release fetched from Maven.")
    private_port: int = Field(19092, description="Client port of the local private cluster.")
    public_port: int = Field(29092, description="Client port of the local public cluster.")
    broker_heap: str = Field("512m", description="JVM heap of each local broker (-Xmx and -Xms).")
    broker_start_timeout_s: float = Field(90.0, description="How long to wait for readiness.")
    private_bootstrap: str | None = Field(
        None, description="Use this private cluster instead of the local one (host:port,...)."
    )
    public_bootstrap: str | None = Field(
        None, description="Use this public cluster instead of the local one (host:port,...)."
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, description="How long a command waits for a cluster to answer before it "
        "says, in one line, that it cannot reach it.")

    # --- topics ---------------------------------------------------------------------------
    events_topic: str = Field("events", description="Click and search events, keyed by user.")
    dlq_topic: str = Field("events.dlq", description="Undecodable or invalid events with reason.")
    recommendations_topic: str = Field("recommendations", description="Top-K per user.")
    samples_topic: str = Field("samples.anon", description="Anonymised samples (private).")
    train_topic: str = Field("train.samples", description="Training samples (public).")
    releases_topic: str = Field("model.releases", description="Model releases (compacted).")
    partitions: int = Field(4, ge=1, description="Partitions of every user-keyed topic.")

    # --- worker ---------------------------------------------------------------------------
    app_id: str = Field("streamrec", description="Faust app id = consumer group of the workers.")
    model_dir: Path | None = Field(None, description="Model artifact the workers serve.")
    top_k: int = Field(20, ge=1, le=1000, description="Items per recommendation.")
    batch_max_records: int = Field(512, ge=1, description="Micro-batch closes at this many.")
    batch_max_ms: float = Field(10.0, gt=0, description="...or after this many milliseconds.")
    batch_min_ms: float = Field(0.0, ge=0, description="A batch closes before batch_max_ms "
                                "when the scorer is idle, but not before this many milliseconds.")
    events_reader: Literal["librdkafka", "faust"] = Field(
        "librdkafka", description="Who fetches the events: a librdkafka consumer on the "
        "partitions Faust assigned (faster), or Faust's own aiokafka client.")
    history_len: int = Field(50, ge=1, le=1000, description="Recent items kept per user.")
    misrouted: Literal["dead-letter", "forward"] = Field(
        "dead-letter", description="An event on another partition than murmur2(user id) "
        "gives (a producer with librdkafka's default partitioner): sent to the DLQ with the "
        "fix, or produced again to its right partition (at-least-once across a crash).")
    session_timeout_s: float = Field(6.0, ge=1.0, le=300.0, description="Consumer-group "
                                     "session: a worker silent this long loses its partitions "
                                     "(the broker's group.min.session.timeout.ms is 6 s).")
    heartbeat_interval_s: float = Field(1.0, gt=0, description="How often a worker tells the "
                                        "group it is alive (and learns of a rebalance).")
    worker_id: str | None = Field(None, description="Static group membership "
                                  "(group.instance.id): a worker restarted under the same id "
                                  "takes its partitions back without a rebalance. Default: "
                                  "<host>-<web_port>; 'none' turns static membership off.")
    stall_timeout_s: float = Field(60.0, ge=5.0, description="Watchdog: a worker whose "
                                   "assigned events partitions have lag and commit nothing "
                                   "for this long reports itself stalled and exits, so that "
                                   "its supervisor restarts it.")
    web_port: int = Field(6066, description="HTTP port of the worker (views and /metrics).")
    emit_samples: bool = Field(True, description="Workers send anonymised training samples "
                               "to samples_topic (the learning loop's input).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "warning", description="Log level of workers and long-running commands.")
    scoring_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime provider: CUDA when present (auto), or forced."
    )
    scoring_threads: int = Field(0, ge=0, description="ONNX Runtime CPU threads per worker "
                                 "(0: one per core but one, left to the event loop).")

    # --- privacy --------------------------------------------------------------------------
    pseudonym_secret: SecretStr = Field(
        SecretStr("change-me"), description="HMAC key for pseudonyms and token buckets."
    )
    token_buckets: int = Field(4096, ge=16, description="Hash buckets for search tokens.")
    pseudonym_key_version: int = Field(1, ge=1, description="Version of pseudonym_secret "
                                       "(bump it when rotating the secret).")
    previous_pseudonym_secrets: dict[int, SecretStr] = Field(
        default_factory=dict, description="Older secrets by version, kept during a rotation.")
    sample_rate: float = Field(1.0, ge=0.0, le=1.0, description="Share of users (by pseudonym) "
                               "whose events become training samples.")
    time_bucket_ms: int = Field(3_600_000, ge=1000, description="Sample times are coarsened "
                                "to multiples of this.")
    mirror_allowlist: tuple[str, ...] = Field(("samples.anon",), description="Private topics "
                                              "the mirror may copy to the public cluster.")
    model_store: str = Field("var/models", description="Where the trainer stores artifacts: "
                             "a directory (file:// URIs in releases) or s3://BUCKET/PREFIX.")
    s3_endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible "
                                        "service (MinIO: http://HOST:9000); unset: AWS S3.")
    s3_region: str | None = Field(None, description="Region of the bucket; unset: the AWS "
                                  "chain's (AWS_REGION, ~/.aws/config). Credentials: AWS chain.")
    signing_key_path: Path = Field(Path("var/keys/trainer.key"), description="The trainer's "
                                   "private Ed25519 key (public side).")
    verify_key_path: Path = Field(Path("var/keys/trainer.pub"), description="The trainer's "
                                  "public key the private side verifies releases with.")

    @field_validator("model_store", mode="before")
    @classmethod
    def _store_location(cls, value: object) -> str:
        text = str(value)
        if "://" in text and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", text):
            raise ValueError(f"{text!r}: give a directory or s3://BUCKET/PREFIX (a lower-case "
                             "S3 bucket name); other URL schemes are not supported")
        return text

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r}: give the endpoint as a URL, e.g. http://127.0.0.1:9000")
        return value

    @property
    def model_store_is_s3(self) -> bool:
        """Whether the model store is an S3 bucket rather than a directory."""
        return self.model_store.startswith("s3://")

    @property
    def group_instance_id(self) -> str | None:
        """The worker's static-membership id (None: dynamic membership)."""
        if self.worker_id is None:
            return f"{socket.gethostname()}-{self.web_port}"
        return None if self.worker_id.lower() == "none" else self.worker_id

    @property
    def worker_dir(self) -> Path:
        """Local table state (RocksDB) of the worker serving on ``web_port``."""
        return self.data_dir.resolve() / "worker" / f"web-{self.web_port}"

    @property
    def artifact_dir(self) -> Path:
        """Where artifacts are written on this machine: the model store directory, or
        ``<data_dir>/model-staging`` (exported there, then uploaded) when it is s3://."""
        if self.model_store_is_s3:
            return self.data_dir / "model-staging"
        return Path(self.model_store)

    @property
    def private_servers(self) -> str:
        """Bootstrap servers of the private cluster."""
        return self.private_bootstrap or f"127.0.0.1:{self.private_port}"

    @property
    def public_servers(self) -> str:
        """Bootstrap servers of the public cluster."""
        return self.public_bootstrap or f"127.0.0.1:{self.public_port}"

    def cluster_names(self) -> dict[str, str]:
        """Which cluster each bootstrap address is, for messages ("private", "public")."""
        return {self.public_servers: "public", self.private_servers: "private"}

    def servers(self, cluster: Cluster) -> str:
        """Bootstrap servers of the named cluster."""
        return self.private_servers if cluster == "private" else self.public_servers


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]


class InvalidSetting(ConfigError):
    """A ``STREAMREC_*`` environment variable holds a value the settings refuse."""


def settings_from_env() -> Settings:
    """The settings of the environment, or InvalidSetting naming each variable that is wrong."""
    try:
        return Settings()  # type: ignore[call-arg]  # the fields come from the environment
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise InvalidSetting(f"invalid setting {problems}; fix or unset it") from None
    except UnparsableSetting as exc:  # e.g. a dict-valued variable that is not JSON
        raise InvalidSetting(f"{exc}; fix or unset it") from None


def _problem(error: Any) -> str:
    """``STREAMREC_TOP_K='0': Input should be ...`` for one of pydantic's errors."""
    field, *inner = [str(part) for part in error["loc"]] or ["?"]
    name = f"{Settings.model_config['env_prefix']}{field.upper()}"
    where = f"{name} at {'.'.join(inner)}" if inner else name
    message = str(error["msg"]).removeprefix("Value error, ")
    if field in _SECRET_FIELDS:  # never echo a secret, even a malformed one
        return f"{where}: {message}"
    return f"{where}={error['input']!r}: {message}"


_SECRET_FIELDS = {name for name, info in Settings.model_fields.items()
                  if "SecretStr" in str(info.annotation)}
