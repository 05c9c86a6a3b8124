"""Worker processes make their row groups without loading pandas (pyarrow would load it on the
first ``pa.array`` of a Python list: ~0.15-0.3 s of CPU per worker at start-up, beside the run
they work for). A ``pandas`` earlier on the path than the real one records each process that
imports it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.support import EXAMPLES

SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import dd_core
    if sys.argv[2] == "exec":  # another thread: the workers are fresh interpreters, not forks
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    dd_core.generate(sys.argv[1], 4000, buffer_size=1000, artifact_path=sys.argv[3], resume="never", workers=2)
    """
)


@pytest.mark.parametrize("start", ["fork", "exec"])
def test_worker_processes_do_not_import_pandas(tmp_path, start):
    marker = tmp_path / "pandas-imported-by"
    fake = tmp_path / "fake" / "pandas"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        f"import os\nwith open({str(marker)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\nraise ImportError('not the real pandas')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "fake"), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(EXAMPLES / "customers.yaml"), start, str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out" / "customers" / "parquet-files").glob("batch_*.parquet"))) == 4
    assert not marker.exists(), f"pandas imported by process(es) {marker.read_text().split()}"
