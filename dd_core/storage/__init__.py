"""Where datasets and seeds live: dataset folders (layout, crash-safe writes, metadata, locks and
claims) on a local disk or an object store, and seed files on either or on the Hugging Face Hub."""
