"""Screenshots of dd's asset pages in Dagster's UI, before and after a config change.

    .venv/bin/python -m tests.e2e.ui_screenshots --out ui-screenshots

Needs Debian's Chromium (`apt-get install chromium`) and the `ui` extra (Playwright, driving
/usr/bin/chromium; no browser download). Starts dagster-webserver and dagster-daemon on a fresh
SQLite instance (tests/e2e/ui_location: `customers` from samplers, `tickets` from LLM columns
on a local OpenAI-compatible server), materializes everything, photographs the pages into
OUT/before/, changes customers.yaml in a way that changes the data, reloads the code location,
runs the row-group check and tries the combined asset (as "Materialize unsynced" would), and
photographs the same pages into OUT/after/; then turns on the regeneration sensor, materializes
the combined asset again and photographs the result into OUT/regenerated/. Not part of the test
suite: it is for looking at.

    .venv/bin/python -m tests.e2e.ui_screenshots --acceptance --out ui-screenshots

materializes only examples/support_tickets_accepted.yaml (8 row groups under an acceptance rule, one run)
and photographs its row groups' plots (candidates, accepted and the rate per partition) into
OUT/acceptance/.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from dd_core.testing.llm_server import OpenAIServerProcess
from tests.e2e.asset_graphql import check_executions, launch_asset_run, reload_location
from tests.e2e.dagster_services import (
    TERMINAL_RUN_STATUSES,
    DagsterServices,
    launch_job_run,
    partition_keys,
    poll,
    sqlite_instance_config,
    start_sensor,
    stop_sensor,
    wait_for_run_status,
)
from tests.support import EXAMPLES

LOCATION = "ui_demo"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Tall, so a page's own scroll areas (metadata, columns) show whole.
VIEWPORT = {"width": 1600, "height": 2600}
#: (file name, path under the webserver, a button to press once the page is there).
PAGES = [
    ("01-lineage", f"/locations/{LOCATION}/asset-groups/customers", None),
    ("02-catalog", "/assets", None),
    ("03-row-groups-overview", "/assets/customers_row_groups", None),
    ("04-row-groups-partitions", "/assets/customers_row_groups?view=partitions&partition=00003", None),
    ("05-row-groups-checks", "/assets/customers_row_groups?view=checks", None),
    ("06-combined-overview", "/assets/customers", None),
    ("07-combined-events", "/assets/customers?view=events", None),
    ("08-tickets-row-groups-plots", "/assets/tickets_row_groups", "Plots"),
    ("09-tickets-combined-events", "/assets/tickets?view=events", None),
    ("10-tickets-combined-plots", "/assets/tickets", "Plots"),
    ("11-launchpad", f"/locations/{LOCATION}/jobs/customers_row_groups_job/playground", None),
    ("12-resource", f"/locations/{LOCATION}/resources/data_designer", None),
    ("13-automation", "/automation", None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("ui-screenshots"))
    parser.add_argument("--acceptance", action="store_true", help="only the dataset with an acceptance rule")
    args = parser.parse_args()
    out = args.out.resolve()
    if args.acceptance:
        _acceptance(out / "acceptance")
        return
    for phase in ("before", "after", "regenerated"):
        shutil.rmtree(out / phase, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="dd-ui-"))
    try:
        shutil.copy(EXAMPLES / "customers.yaml", work / "customers.yaml")
        shutil.copy(EXAMPLES / "support_tickets_llm.yaml", work / "tickets.yaml")
        with OpenAIServerProcess(latency_ms=5) as llm:
            workspace = work / "workspace.yaml"
            location_file = Path(__file__).parent / "ui_location" / "ui_defs.py"
            workspace.write_text(
                yaml.safe_dump(
                    {"load_from": [{"python_file": {"relative_path": str(location_file), "location_name": LOCATION}}]}
                )
            )
            env = {"DD_UI_DIR": str(work), "DD_UI_LLM_BASE_URL": llm.base_url}
            with DagsterServices(
                work / "dagster-home", workspace, instance_config=sqlite_instance_config(), env=env
            ) as svc:
                _materialize_everything(svc)
                _photograph(svc, out / "before")
                _change_config(svc, work / "customers.yaml")
                _photograph(svc, out / "after", extra=[("14-refused-run", f"/runs/{svc.refused_run}", None)])
                _regenerate(svc)
                _photograph(
                    svc, out / "regenerated", pages=[p for p in PAGES if p[0][:2] in ("01", "03", "05", "06", "13")]
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots in {out}/before and {out}/after")


def _acceptance(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="dd-ui-"))
    try:
        for name in ("customers", "accepted"):
            source = "support_tickets_accepted" if name == "accepted" else name
            shutil.copy(EXAMPLES / f"{source}.yaml", work / f"{name}.yaml")
        shutil.copy(EXAMPLES / "support_tickets_llm.yaml", work / "tickets.yaml")
        with OpenAIServerProcess(latency_ms=5) as llm:
            workspace = work / "workspace.yaml"
            location_file = Path(__file__).parent / "ui_location" / "ui_defs.py"
            workspace.write_text(
                yaml.safe_dump(
                    {"load_from": [{"python_file": {"relative_path": str(location_file), "location_name": LOCATION}}]}
                )
            )
            env = {"DD_UI_DIR": str(work), "DD_UI_LLM_BASE_URL": llm.base_url}
            with DagsterServices(
                work / "dagster-home", workspace, instance_config=sqlite_instance_config(), env=env
            ) as svc:
                _materialize_everything(svc, datasets=(("accepted", 8),), per_run=8)
                pages = [
                    ("15-accepted-row-groups-plots", "/assets/accepted_row_groups", "Plots"),
                    (
                        "16-accepted-row-groups-partition",
                        "/assets/accepted_row_groups?view=partitions&partition=00002",
                        None,
                    ),
                    ("17-accepted-combined-events", "/assets/accepted?view=events", None),
                ]
                _photograph(svc, folder, pages=pages)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _materialize_everything(
    svc: DagsterServices, datasets: tuple = (("customers", 8), ("tickets", 6)), per_run: int | None = None
) -> None:
    for name, count in datasets:
        poll(
            svc,
            lambda n=name: partition_keys(svc, [f"{n}_row_groups"]),
            lambda keys, c=count: len(keys) == c,
            120,
            f"{name}'s partitions",
        )
        size = per_run or (4 if name == "customers" else 3)
        runs = [
            launch_job_run(
                svc,
                f"{name}_row_groups_job",
                tags={
                    "dagster/asset_partition_range_start": f"{s:05d}",
                    "dagster/asset_partition_range_end": f"{min(s + size, count) - 1:05d}",
                },
            )
            for s in range(0, count, size)
        ]
        for run_id in runs:
            assert wait_for_run_status(svc, run_id, TERMINAL_RUN_STATUSES, timeout=300)["status"] == "SUCCESS", (
                svc.logs()
            )
        combined = launch_asset_run(svc, [[name]])
        assert wait_for_run_status(svc, combined, TERMINAL_RUN_STATUSES, timeout=300)["status"] == "SUCCESS", svc.logs()


def _change_config(svc: DagsterServices, config: Path) -> None:
    """An edit that changes the data, then "Reload", the check's "Execute", and the combined
    asset's "Materialize" (what "Materialize unsynced" selects after such a change)."""
    text = config.read_text()
    config.write_text(text.replace("    high: 100\n", "    high: 50\n", 1))
    assert config.read_text() != text
    reload_location(svc, LOCATION)
    check = launch_asset_run(svc, checks=[(["customers_row_groups"], "row_groups_current")])
    wait_for_run_status(svc, check, TERMINAL_RUN_STATUSES, timeout=180)
    svc.refused_run = launch_asset_run(svc, [["customers"]])
    wait_for_run_status(svc, svc.refused_run, TERMINAL_RUN_STATUSES, timeout=180)


def _regenerate(svc: DagsterServices) -> None:
    """What the check and the refusal tell the user to do: turn on the regeneration sensor,
    let its runs finish, then materialize the combined asset again."""
    turned_on = time.time()
    start_sensor(svc, "customers_regenerate_stale")
    poll(
        svc,
        lambda: check_executions(svc, ["customers_row_groups"], "row_groups_current", limit=1),
        lambda e: e and e[0]["status"] == "SUCCEEDED" and e[0]["run"]["creationTime"] >= turned_on,
        300,
        "the regenerated row groups",
    )
    stop_sensor(svc, "customers_regenerate_stale")
    combined = launch_asset_run(svc, [["customers"]])
    assert wait_for_run_status(svc, combined, TERMINAL_RUN_STATUSES, timeout=180)["status"] == "SUCCESS", svc.logs()


def _photograph(
    svc: DagsterServices, folder: Path, extra: list[tuple[str, str, str | None]] = (), pages: list | None = None
) -> None:
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="dd-chromium-") as profile:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport=VIEWPORT
        )
        page = browser.new_page()
        for name, path, button in [*(PAGES if pages is None else pages), *extra]:
            page.goto(svc.url + path, wait_until="networkidle", timeout=60_000)
            _dismiss_welcome(page)
            if button:
                _press(page, button)
                page.wait_for_load_state("networkidle")
            time.sleep(1.5)  # charts and lazily loaded panels settle after the network does
            _dismiss_welcome(page)
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True, timeout=120_000)
            print(f"{folder.name}/{name}.png  {path}", flush=True)
        browser.close()


def _press(page, button: str) -> None:
    """Click a button of the page; the welcome dialog may open late (on a busy machine) and cover it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # the ui extra, as in _photograph

    target = page.get_by_text(button, exact=True).first
    for _ in range(10):
        _dismiss_welcome(page)
        with contextlib.suppress(PlaywrightTimeout):
            target.click(timeout=10_000)
            return
    target.click(timeout=10_000)  # the last try raises


def _dismiss_welcome(page) -> None:
    """A fresh browser profile is greeted with "Join the Dagster community": skip it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # the ui extra, as in _photograph

    skip = page.get_by_role("button", name="Skip", exact=True)
    with contextlib.suppress(PlaywrightTimeout):  # it may open a moment after the page loads
        skip.first.wait_for(timeout=3000)
    if skip.count():
        skip.first.click()
        page.wait_for_timeout(300)


if __name__ == "__main__":
    main()
