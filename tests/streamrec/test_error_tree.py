"""The error tree: each branch's exit code, errors with two bases, and how the CLI prints them."""

from __future__ import annotations

import argparse

import pytest

from connectors.datasets.synthetic import SyntheticConfig
from connectors.mirror.transfer import Mirror, MirrorConfig, MirrorError
from connectors.privacy.anonymizer import Anonymizer
from connectors.releases.signing import SignatureError, SigningError
from connectors.releases.store import StoreError, StoreUnavailable
from connectors.sdk.events import InvalidEvent, parse_event
from connectors.sdk.ingest import BadLines
from streamrec.cli.main import main, run_command
from streamrec.errors import (
    BadData,
    ClusterUnreachable,
    ConfigError,
    PrivacyViolation,
    ReleaseRefused,
    StreamrecError,
)
from streamrec.settings import InvalidSetting, settings_from_env


@pytest.mark.parametrize(("error", "code"), [
    (StreamrecError, 1), (ConfigError, 2), (BadData, 2), (ClusterUnreachable, 1),
    (PrivacyViolation, 2), (ReleaseRefused, 1),
    (SigningError, 2),  # a key file that is missing or exists: fix it
    (SignatureError, 1),  # a release signed by another key: refused, like any failed check
    (StoreUnavailable, 1), (BadLines, 1),
])
def test_each_branch_has_its_exit_code(error: type[StreamrecError], code: int) -> None:
    assert error("x").exit_code == code


def test_errors_with_two_bases_are_caught_as_either() -> None:
    assert issubclass(SignatureError, ReleaseRefused) and issubclass(SignatureError, SigningError)
    assert issubclass(StoreUnavailable, ClusterUnreachable) and issubclass(StoreUnavailable,
                                                                          StoreError)
    with pytest.raises(ValueError, match="'user_id' is required"):  # still a ValueError
        parse_event({"type": "click", "item_id": "i"})
    with pytest.raises(BadData):
        parse_event({"type": "click", "item_id": "i"})
    assert issubclass(InvalidEvent, ValueError)
    with pytest.raises(ValueError, match="search_share must be in"):
        SyntheticConfig(users=1, items=2, events=1, search_share=2.0)


def test_a_topic_off_the_allow_list_is_a_privacy_violation() -> None:
    anonymizer = Anonymizer(b"k", 1, n_buckets=64, time_bucket_ms=3_600_000, sample_rate=1.0)
    with pytest.raises(PrivacyViolation, match="not on the mirror allow-list") as refused:
        Mirror(MirrorConfig("x", "y", "events", "t", allowlist=("samples.anon",)), anonymizer)
    assert isinstance(refused.value, MirrorError) and refused.value.exit_code == 2


def _raising(exc: BaseException):
    def run(args: argparse.Namespace, settings: object) -> int:
        raise exc
    return run


def test_the_cli_prints_one_line_with_the_notes(capsys: pytest.CaptureFixture) -> None:
    error = ReleaseRefused("release v2 is signed by another key")
    error.add_note("current is unchanged")
    assert run_command("models", _raising(error), argparse.Namespace()) == 1
    assert capsys.readouterr().err == ("streamrec models: release v2 is signed by another key; "
                                       "current is unchanged\n")


def test_an_unexpected_error_is_one_line_too(capsys: pytest.CaptureFixture) -> None:
    assert run_command("mirror", _raising(RuntimeError("boom")), argparse.Namespace()) == 1
    err = capsys.readouterr().err
    assert err.startswith("streamrec mirror: RuntimeError: boom (") and err.count("\n") == 1
    assert "python -X dev" in err
    assert run_command("demo", _raising(KeyboardInterrupt()), argparse.Namespace()) == 130


def test_a_wrong_setting_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("STREAMREC_TOP_K", "0")
    monkeypatch.setenv("STREAMREC_MODEL_STORE", "gs://bucket")
    with pytest.raises(InvalidSetting) as invalid:
        settings_from_env()
    message = str(invalid.value)
    assert "STREAMREC_TOP_K='0'" in message and "STREAMREC_MODEL_STORE='gs://bucket'" in message
    assert main(["broker", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamrec broker: invalid setting STREAMREC_TOP_K") and err.count(
        "\n") == 1


def test_a_secret_setting_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_PREVIOUS_PSEUDONYM_SECRETS", '{"one": "hunter2"}')
    with pytest.raises(InvalidSetting, match="STREAMREC_PREVIOUS_PSEUDONYM_SECRETS") as invalid:
        settings_from_env()
    assert "hunter2" not in str(invalid.value)
