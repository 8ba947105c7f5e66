"""Every command that needs a Kafka cluster says, in one line and within the connect timeout, that
it cannot reach one: which cluster, which address, what to do; no traceback, no librdkafka log."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

TIMEOUT_S = 2  # STREAMREC_CONNECT_TIMEOUT_S for these runs
COMMANDS = [  # (arguments, the cluster it needs first)
    (["produce", "-"], "private"),
    (["subscribe", "--max", "1"], "private"),
    (["subscribe", "--cluster", "public", "--max", "1"], "public"),
    (["worker"], "private"),
    (["replay", "--from-topic", "a", "--to-topic", "b", "--since", "-1h"], "private"),
    (["replay", "rebuild-state", "--since", "-1h", "--app-id", "blue-2"], "private"),
    (["replay", "backfill-training", "--since", "-1h"], "private"),
    (["mirror"], "private"),
    (["audit", "public"], "public"),
    (["models", "sync"], "public"),
]
ADDRESS = {"private": "127.0.0.1:1", "public": "127.0.0.1:2"}  # nothing listens there


@pytest.mark.parametrize(("argv", "cluster"), COMMANDS, ids=[" ".join(a) for a, _ in COMMANDS])
def test_an_unreachable_cluster_is_one_line_and_a_non_zero_exit(argv, cluster, tmp_path) -> None:
    env = dict(os.environ, STREAMREC_PRIVATE_BOOTSTRAP=ADDRESS["private"],
               STREAMREC_PUBLIC_BOOTSTRAP=ADDRESS["public"],
               STREAMREC_CONNECT_TIMEOUT_S=str(TIMEOUT_S), STREAMREC_DATA_DIR=str(tmp_path))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "streamrec", *argv], env=env, input='{"type": '
                         '"click", "user_id": "a", "item_id": "b"}\n', capture_output=True,
                         text=True, timeout=60)
    took = time.monotonic() - started
    output = (run.stdout + run.stderr).strip().splitlines()
    assert run.returncode == 1, output
    assert output == [output[-1]], f"more than one line: {output[:5]}"
    assert output[0].startswith(f"streamrec {argv[0]}: cannot reach the {cluster} Kafka cluster "
                                f"at {ADDRESS[cluster]} within {TIMEOUT_S} s"), output[0]
    assert f"STREAMREC_{cluster.upper()}_BOOTSTRAP" in output[0]
    assert took < TIMEOUT_S + 20  # the timeout, plus starting Python and importing the command
