"""``ddsynth status``: what a dataset folder holds and whether a config would resume it."""

from __future__ import annotations

from pathlib import Path

from dd_core.config import load_config
from dd_core.errors import DDUsageError, ResumeConflictError
from dd_core.fingerprinting import fingerprint
from dd_core.resume import Action, ResumeMode, plan_resume
from dd_core.storage.dataset_folder import FolderScan, scan_folder
from dd_core.storage.filesystems import storage_path
from dd_core.storage.layout import DatasetLayout
from dd_core.storage.metadata import DatasetMetadata


def describe(path: str, config_path: Path | None = None, num_records: int | None = None) -> dict[str, object]:
    layout = DatasetLayout(storage_path(path))
    if layout.root.is_local and layout.root.local.is_file():
        raise DDUsageError(f"{layout.root} is a file, not a dataset folder")
    if not layout.root.exists():
        raise DDUsageError(f"{layout.root} does not exist; expected a dataset folder made by ddsynth generate")
    scan = scan_folder(layout)
    meta = scan.metadata
    report: dict[str, object] = {"folder": layout.root, "found": scan.found.kind.value}
    if meta is not None:
        done_groups = len(meta.completed) + len(scan.unrecorded)
        report.update(
            {
                "status": meta.status,
                "target records": meta.num_records,
                "buffer size": meta.buffer_size,
                "row groups": f"{done_groups} of {meta.num_row_groups} finished",
                "records": f"{meta.actual_num_records + sum(i.num_rows for i in scan.unrecorded.values())} finished",
                "dropped rows": meta.dropped_rows,
                **_acceptance(meta),
                "config hash": meta.config_hash,
                "updated": meta.updated_at,
            }
        )
        if scan.unrecorded:
            shown = sorted(scan.unrecorded)
            report["unrecorded"] = (
                f"row groups {shown[:20]}{'...' if len(shown) > 20 else ''} (recorded on the next resume)"
            )
        if meta.status != "complete":
            report["continue with"] = f"ddsynth resume {layout.root}"
    if config_path is not None:
        cfg = load_config(config_path)
        fp = fingerprint(cfg)["config_hash"]
        report["config"] = f"{config_path} ({fp})"
        report["would resume"] = _would_resume(
            scan, fp, num_records or (meta.num_records if meta else None), meta, layout
        )
    return report


def _acceptance(meta: DatasetMetadata) -> dict[str, str]:
    counts = meta.extra.get("acceptance")
    if not isinstance(counts, dict) or not isinstance(counts.get("candidates"), int) or not counts["candidates"]:
        return {}
    accepted = counts.get("accepted", 0)
    rate = accepted / counts["candidates"] if isinstance(accepted, int) else 0.0
    return {"acceptance": f"{accepted:,} of {counts['candidates']:,} candidates passed the rule ({rate:.1%})"}


def _would_resume(
    scan: FolderScan, config_hash: str, num_records: int | None, meta: DatasetMetadata | None, layout: DatasetLayout
) -> str:
    if num_records is None:
        return "no target known; pass --num-records"
    try:
        plan = plan_resume(
            ResumeMode.IF_POSSIBLE,
            scan.found,
            config_hash,
            num_records,
            meta.buffer_size if meta else 1000,
            location=f"dataset folder {layout.root}",
        )
    except ResumeConflictError as exc:
        return f"no: {exc}"
    if plan.action is Action.ALREADY_COMPLETE:
        return "yes: already complete, nothing to generate"
    return f"yes: {len(plan.reuse)} row group(s) reused, {len(plan.generate)} to generate"
