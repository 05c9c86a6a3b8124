"""Dataset folders on disk: layout, crash-safe writes, metadata, locking."""
