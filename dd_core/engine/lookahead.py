"""How far the pipeline looks ahead: rows in progress and row groups admitted per request slot.

Shared by the event loop that runs row groups (``row_group_loop``) and the worker pool that
feeds several of them (``workers``).
"""

#: Rows in progress: one per request slot. A row holds at most one request at a time and its worker
#: moves straight on to the next row, so with one model one row per slot keeps every slot busy
#: and no request ever waits at the limiter (unless the adaptive limit is below the maximum).
#: With several models, a row waiting for one model leaves another's slot free: twice as many.
ROWS_PER_SLOT_SEVERAL_MODELS = 2
#: Rows of admitted, unfinished row groups per request slot: room for the next row groups to
#: run while an older one waits for a straggler (~10 s at the tail of a lognormal latency).
LOOKAHEAD_ROWS_PER_SLOT = 16
MAX_ROW_GROUPS_IN_FLIGHT = 64
#: Rows of admitted row groups whose batches may be out at once (memory: a task per row).
BATCH_LOOKAHEAD_ROWS = 50_000
