"""``ddsynth`` with a hook between its two reads of a dataset folder (the row-group listing and
metadata.json, in whichever order dd makes them): after the first read, it opens the gate a
paused first writer waits at, and waits until that writer has recorded its next row group.

``python tests/core/second_writer.py GATE METADATA ROW_GROUPS ddsynth-args...``
"""

from __future__ import annotations

import json
import sys
import time

from dd_core.interface import cli
from dd_core.storage import dataset_folder
from dd_core.storage.filesystems import storage_path

gate, metadata, row_groups = sys.argv[1], storage_path(sys.argv[2]), int(sys.argv[3])
opened = []


def recorded() -> int:
    return json.loads(metadata.read_bytes())["num_completed_row_groups"]


def between_the_reads() -> None:
    if opened:
        return
    opened.append(True)
    open(gate, "w").close()
    deadline = time.monotonic() + 120
    while recorded() < row_groups:
        if time.monotonic() > deadline:
            raise SystemExit("the first writer did not record its row group within 120 s")
        time.sleep(0.01)


def hooked(read):  # noqa: ANN001, ANN202
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = read(*args, **kwargs)
        between_the_reads()
        return result

    return wrapper


dataset_folder.list_batches = hooked(dataset_folder.list_batches)
dataset_folder.load_metadata = hooked(dataset_folder.load_metadata)
sys.argv = ["ddsynth", *sys.argv[4:]]
cli.main()
