"""A run killed inside a row group with LLM columns pays for no finished call again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from dd_core import generate, load_dataset
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import chain_config
from tests.support import ROOT, answers_stopped, wait_for

PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 4.0}


def test_sigkill_mid_row_group_then_resume_resends_no_successful_request(tmp_path):
    with OpenAIServer(latency_ms=20) as server:
        config_path = tmp_path / "chain.json"
        config_path.write_text(json.dumps(chain_config(server.base_url, price=PRICE)))
        command = [
            sys.executable,
            "-m",
            "dd_core",
            "generate",
            str(config_path),
            "-n",
            "200",
            "--buffer-size",
            "100",
            "--artifact-path",
            str(tmp_path),
        ]
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # Row group 0 makes 200 calls; stop the world in the middle of row group 1.
            wait_for(lambda: server.stats()["succeeded"] >= 290, 120, "calls of row group 1")
            with answers_stopped(server, tmp_path / "chain"):  # no new request succeeds, every answer is on disk
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGKILL
        before = server.stats()
        assert 290 <= before["succeeded"] < 400
        # Row groups are pipelined: row group 1's calls start before row group 0's end. Row
        # group 0 may be finished (and recorded); every answered call is in some row group's log.
        logs = sorted((tmp_path / "chain" / "llm-cache").glob("rg_*.jsonl"))
        assert [p.name for p in logs] == ["rg_00000.jsonl", "rg_00001.jsonl"]
        assert sum(1 for p in logs for _ in p.open()) == before["succeeded"]
        recorded = json.loads((tmp_path / "chain" / "metadata.json").read_text())["completed_row_groups"]

        for mode in ("always", "if_possible"):  # the second run finds it complete
            result = generate(config_path, 200, buffer_size=100, artifact_path=tmp_path, resume=mode)
        after = server.stats()
        assert after["succeeded"] == 400, "every cell is paid for exactly once"
        assert max(after["success_keys"].values()) == 1, "a request that had succeeded was sent again"
        usage = result.llm_usage["writer"]
        # the killed run could not record the calls of unfinished row groups; the resumed run
        # reports them as cache hits
        paid_by_killed_run = before["succeeded"] - 200 * sum(end - start + 1 for start, end in recorded)
        assert usage["cache_hits"] == paid_by_killed_run and usage["calls"] + usage["cache_hits"] == 400

    with OpenAIServer(latency_ms=0) as fresh:
        straight = generate(
            chain_config(fresh.base_url, price=PRICE), 200, buffer_size=100, artifact_path=tmp_path / "straight"
        )
    assert load_dataset(result.path).equals(straight.load())
    # Cost counts the calls the killed run paid for (the resumed run saw them as cache hits):
    # exactly what an uninterrupted run paid.
    assert result.metadata["llm_spend"] == straight.metadata["llm_spend"]
    assert result.metadata["llm_spend"]["writer"]["requests"] == 400
    assert result.metadata["llm_cost_usd"] == straight.metadata["llm_cost_usd"] > 0
