"""The Dagster UI as a user sees it: drops land, the sensor runs them, a user materializes, backfills and sees
a failing blocking check stop a release. Headless Debian chromium driven by Playwright against `dagster dev`,
which the test helper then stops with SIGTERM alone (webserver, daemon and code servers all exit cleanly)."""

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import playwright.sync_api as playwright_sync
import pytest

from mmrecipe.drops import MANIFEST, manifest_for_folder
from mmrecipe.package_data import bundled
from tests.conftest import require_service
from tests.ui.dagster_dev import CHROMIUM_ARGS, REPO, DagsterDev, chromium_path, dagster_dev, process_group_alive
from tests.warc_fixtures import HttpResponse, warc_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SAMPLES = REPO / "samples" / "drops"
EVALSETS = bundled("evalsets")
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"  # ignored by git; `make screenshots` refreshes the README's
STAGES = [
    "raw_crawl",
    "extracted_text",
    "deduped_images",
    "transcribed_audio",
    "video_clips",
    "mixture",
    "eval_results",
]
DROP_STAGES = ["raw_crawl", "filtered_text", "extracted_text", "deduped_images", "transcribed_audio"]
STAGE = "deduped_images"  # the drop stage the user re-materializes and backfills (cheap, no model download)
RECIPE = "default"
BAD_DROP = "sample-c-mirror"  # sorts after sample-b: the sensor lists only folders after its cursor
# How long a run or backfill may take before the test gives up: a bound, not a timing check (the same runs take
# ~1-2 min on an idle machine and over 4 min when other work shares the 2 cores).
RUN_WAIT_S = 600
AUTOMATION = {"dagster/from_automation_condition", "dagster/sensor_name", "dagster/auto_materialize"}
VIEWPORT = {"width": 1280, "height": 800}

require_service(
    chromium_path(), "no chromium at /usr/bin/chromium: `apt-get install chromium` (.ci/install-system.sh does)"
)


def contaminated_drop(folder: Path) -> None:
    """A drop from a mirror that republished the held-out `en_docs` eval set: mixture's decontamination must fail."""
    text = (EVALSETS / "en_docs.txt").read_text()
    sections = re.split(r"\n(?=\w[\w.]* — )", text)
    pages = []
    for i, section in enumerate(sections):
        title, _, body = section.partition("\n")
        paragraphs = "".join(f"<p>{p.strip()}</p>\n" for p in body.split("\n\n") if p.strip())
        html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>\n{paragraphs}</body></html>"
        pages.append(HttpResponse(f"http://docs-mirror.example.net/py/{i}.html", html.encode()))
    folder.mkdir(parents=True)
    (folder / "crawl-00000.warc.gz").write_bytes(warc_bytes(pages))


def land(landing: Path, src: Path, drop: str) -> None:
    """Copy a drop folder into the landing root, writing the manifest last (as an uploader must)."""
    target = landing / drop
    shutil.copytree(src, target, ignore=shutil.ignore_patterns(MANIFEST))
    (target / MANIFEST).write_text(manifest_for_folder(str(target), drop).to_json())


RUNS = """query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) { ... on Runs { results {
  runId status tags { key value } assetSelection { path } } } } }"""
FAILURES = """query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events { __typename
  ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } } } } } }"""
BACKFILLS = """{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status partitionNames
  assetSelection { path } tags { key value } } } } }"""


def backfills(dev: DagsterDev) -> list[dict]:
    return dev.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]


def runs(dev: DagsterDev, **tags: str) -> list[dict]:
    data = dev.graphql(RUNS, {"tags": [{"key": k.replace("__", "/"), "value": v} for k, v in tags.items()]})
    return data["runsOrError"]["results"]


def tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


PARTITION_STATS = """query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  partitionStats { numMaterialized numPartitions numFailed } } } }"""


def partitions_materialized(dev: DagsterDev, asset: str) -> int:
    """How many partitions of an asset have a successful latest materialization."""
    node = dev.graphql(PARTITION_STATS, {"path": [asset]})["assetNodeOrError"]
    return (node.get("partitionStats") or {}).get("numMaterialized", 0)


LATEST_RUN = """query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  assetMaterializations(limit: 1) { runId } } } }"""


def latest_run(dev: DagsterDev, asset: str) -> dict | None:
    """The run of an asset's latest materialization (id, status, tags), if any."""
    node = dev.graphql(LATEST_RUN, {"path": [asset]})["assetNodeOrError"]
    mats = node.get("assetMaterializations") or []
    return next((r for r in runs(dev) if mats and r["runId"] == mats[0]["runId"]), None)


def finished_ok(dev: DagsterDev, run_id: str, timeout: float) -> bool:
    status = wait_until(f"run {run_id} to finish", lambda: finished(dev, [run_id]), timeout=timeout, dev=dev)
    return status == {run_id: "SUCCESS"}


def step_failures(dev: DagsterDev, run_id: str) -> dict[str, str]:
    """Failed step → its error message and cause, for one run."""
    events = dev.graphql(FAILURES, {"runId": run_id})["logsForRun"].get("events", [])
    out = {}
    for e in events:
        if e["__typename"] == "ExecutionStepFailureEvent":
            error = e.get("error") or {}
            out[e["stepKey"]] = f"{error.get('message', '')} {(error.get('cause') or {}).get('message', '')}".strip()
    return out


def failed_steps(dev: DagsterDev, run_ids: list[str]) -> str:
    """The failed steps of runs and their error messages, to explain an unexpected failure."""
    lines = [f"{r[:8]} {step}: {msg[-300:]}" for r in run_ids for step, msg in step_failures(dev, r).items()]
    return "\n".join(lines) or "no step failed"


def wait_until(what: str, probe: Callable[[], object], timeout: float, dev: DagsterDev, every: float = 1) -> object:
    """Poll `probe` until it returns something truthy; fail naming `what` with the server log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    log = dev.log_tail()
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n--- dagster dev log ---\n{log}")


def new_user_runs(dev: DagsterDev, before: set[str]) -> list[str]:
    """Runs started since `before` by a person (not by a sensor, the automation daemon or a backfill)."""
    machine = {"dagster/backfill", *AUTOMATION}
    return [
        r["runId"] for r in runs(dev) if r["runId"] not in before and not any(t["key"] in machine for t in r["tags"])
    ]


def finished(dev: DagsterDev, run_ids: list[str]) -> dict[str, str] | None:
    """Run id → final status once every run finished, else None."""
    statuses = {r["runId"]: r["status"] for r in runs(dev) if r["runId"] in run_ids}
    done = {"SUCCESS", "FAILURE", "CANCELED"}
    return statuses if len(statuses) == len(run_ids) and set(statuses.values()) <= done else None


class Timer:
    """Prints how long each step took (shown with `pytest -s`, and in the report of a failure)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()

    def lap(self, next_step: str) -> None:
        now = time.monotonic()
        print(f"[ui-test] step done in {now - self.last:5.1f}s (total {now - self.start:5.1f}s), next: {next_step}")
        self.last = now


class UI:
    """The browser page plus the few gestures the test repeats; every step leaves a screenshot."""

    def __init__(self, page: "playwright_sync.Page", url: str) -> None:
        self.page, self.url = page, url
        # the UI's one-off "Join the Dagster community" dialog pops up some seconds after a page loads
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda _: page.get_by_role("button", name="Skip").click(),
        )

    def go(self, path: str) -> None:
        self.page.goto(self.url + path)
        self.page.wait_for_load_state("networkidle")

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.wait_for_timeout(500)  # let the last render settle
        self.page.screenshot(path=str(path))
        return path

    def see(self, text: str, timeout: float = 30_000, exact: bool = True) -> None:
        playwright_sync.expect(self.page.get_by_text(text, exact=exact).first).to_be_visible(timeout=timeout)

    def see_after_reloads(self, text: str, timeout: float, every: float = 5) -> None:
        """Wait for `text` on the current page, reloading it every few seconds (for pages that poll slowly)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.see(text, timeout=every * 1000)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                self.page.reload()

    def materialize(self, asset: str, partitions: list[str], button: str) -> None:
        """Asset page → "Materialize…" → tick the partitions → press `button` ("Launch 1 run" / "Launch backfill")."""
        self.go(f"/assets/{asset}")
        self.page.get_by_role("button", name="Materialize…").click()
        self.launch(partitions, button)

    def launch(self, partitions: list[str], button: str) -> None:
        """In the open "Launch runs to materialize …" dialog: tick `partitions`, press `button`."""
        self.page.get_by_text("Select a partition or create one").click()
        for partition in partitions:
            self.page.get_by_role("menuitem", name=partition).click()
        self.page.get_by_placeholder("Filter partitions").press("Escape")
        dialog = self.page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        self.see(f"{len(partitions)} partition{'s' if len(partitions) > 1 else ''}")
        dialog.get_by_role("button", name=button).click()
        playwright_sync.expect(dialog).to_be_hidden(timeout=30_000)


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[DagsterDev]:
    """`dagster dev` on a fresh home whose landing already holds the two sample drops.

    They land before the daemon starts, so the source_drops sensor's first tick finds them: its interval is
    30 s, and landing them after start-up only waited for the second tick. The contaminated drop lands later.
    """
    home = tmp_path / "home"
    for drop in ("sample-a", "sample-b"):
        land(home / "landing", SAMPLES / drop, drop)
    env = {
        "MMRECIPE_EXECUTOR": "in_process",  # one process per run, not one per step: the 2-core CI box stays fast
        "MMRECIPE_AUTOMATION_INTERVAL_SECONDS": "5",  # automation ticks every 5 s instead of 30 s
        "MMRECIPE_STEP_RETRIES": "0",  # a failing step fails at once (no backoff retries to wait out)
    }
    queue = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator",
             "config": {"dequeue_interval_seconds": 1}}  # fmt: skip  # queued runs start within 1 s, not 5 s
    with dagster_dev(home, env, instance={"run_coordinator": queue}) as dev:
        assert len(process_group_alive(dev.process.pid)) >= 3  # dagster dev, webserver, daemon (and code servers)
        yield dev
    assert not process_group_alive(dev.process.pid), "dagster dev left processes behind"


@pytest.fixture
def browser() -> Iterator["playwright_sync.Browser"]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_a_user_drives_the_pipeline_from_the_dagster_ui(
    ui_server: DagsterDev, browser: "playwright_sync.Browser", tmp_path: Path
) -> None:
    dev = ui_server
    landing = Path(dev.env["MMRECIPE_HOME"]) / "landing"
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(30_000)
    ui = UI(page, dev.url)
    timer = Timer()

    # 1-2. Two sample drops landed; the source_drops sensor (on by default) registers them and launches their runs.
    ui.go("/automation")
    for sensor in ("source_drops", "automation", "drop_lag"):
        ui.see(sensor)
    sensor_runs = wait_until(
        "the source_drops sensor to launch a run per drop",
        lambda: (rs := runs(dev, dagster__sensor_name="source_drops")) and len(rs) == 2 and rs,
        timeout=90,
        dev=dev,
    )
    ids = [r["runId"] for r in sensor_runs]
    assert sorted(tag(r, "dagster/partition") for r in sensor_runs) == ["sample-a", "sample-b"]
    ui.go("/runs")
    for text in ("source_drops", "partition: sample-a", "partition: sample-b"):
        ui.see(text)
    ui.shot("01_sensor_runs")
    wait_until("the sensor's runs to finish", lambda: finished(dev, ids), timeout=RUN_WAIT_S, dev=dev)
    assert partitions_materialized(dev, "raw_crawl") == 2, failed_steps(dev, ids)
    for run_id in ids:  # a fresh deployment: only the step that needs the (untrained) quality classifier may fail
        failures = step_failures(dev, run_id)
        assert set(failures) <= {"filtered_text"}, failed_steps(dev, ids)
        assert all("quality classifier" in msg for msg in failures.values()), failed_steps(dev, ids)
    ui.go(f"/runs/{ids[0]}")
    ui.see("source_drops")
    ui.shot("02_sensor_run")

    timer.lap("2b")
    # 2b. A fresh deployment has no quality classifier yet, so the text stages of those runs could not score
    #     documents. The automation sensor trains it ("train when missing") once drops are indexed, and eager
    #     automation then brings every drop stage of both drops up to date. Nobody clicks anything.
    trained = wait_until("the classifier's training", lambda: latest_run(dev, "quality_classifier"), 180, dev)
    assert finished_ok(dev, trained["runId"], 180), failed_steps(dev, [trained["runId"]])
    assert {t["key"] for t in trained["tags"]} & AUTOMATION, trained["tags"]
    wait_until(
        "automation to materialize every drop stage for both drops",
        lambda: all(partitions_materialized(dev, a) == 2 for a in DROP_STAGES),
        timeout=300,
        dev=dev,
    )
    ui.go("/assets/extracted_text?view=partitions")
    ui.see("Materialized (2)")
    page.get_by_text("sample-a", exact=True).first.click()
    for key in ("dagster/row_count", "kept", "drop_reasons", "preview"):  # per-materialization metadata
        ui.see(key)
    ui.shot("02b_automation_caught_up")

    timer.lap("3")
    # 3. The global lineage shows every stage asset (navigation and asset tree folded away, groups expanded).
    ui.go("/asset-groups")
    ui.see("drop_stages")
    page.get_by_text("Hide navigation").click()
    page.locator("button:has([aria-label='panel_show_right'])").click()
    page.keyboard.press("Alt+e")  # "Expand all groups" (also in the graph's settings menu)
    for asset in STAGES:
        playwright_sync.expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    ui.shot("lineage")
    page.locator("button:has([aria-label='panel_show_left'])").first.click()  # navigation back for the next steps

    timer.lap("4")
    # 4. Materialize one partition of a stage from its asset page, and watch the run succeed.
    before = {r["runId"] for r in runs(dev)}
    ui.materialize(STAGE, ["sample-a"], "Launch 1 run")
    (run_id,) = wait_until("the UI-launched run", lambda: new_user_runs(dev, before), 30, dev)
    ui.go(f"/runs/{run_id}")
    ui.see("partition: sample-a")
    ui.see_after_reloads("Success", timeout=120)
    ui.shot("03_materialize_one_partition")

    timer.lap("5")
    # 5. Backfill the stage over both drops and wait for the backfill to succeed.
    before = {b["id"] for b in backfills(dev)}
    ui.materialize(STAGE, ["sample-a", "sample-b"], "Launch backfill")
    (backfill,) = wait_until(
        "the UI-launched backfill",
        lambda: [b for b in backfills(dev) if b["id"] not in before and not {t["key"] for t in b["tags"]} & AUTOMATION],
        30,
        dev,
    )
    assert sorted(backfill["partitionNames"]) == ["sample-a", "sample-b"]
    assert backfill["assetSelection"] == [{"path": [STAGE]}]
    ui.go("/runs?view=backfills")
    page.locator(f"a[href='/runs/b/{backfill['id']}']").first.click()
    ui.see("sample-b")
    status = wait_until(
        "the backfill to complete",
        lambda: next(b["status"] for b in backfills(dev) if b["id"] == backfill["id"]).startswith("COMPLETED_"),
        timeout=RUN_WAIT_S,
        dev=dev,
    )
    assert next(b["status"] for b in backfills(dev) if b["id"] == backfill["id"]) == "COMPLETED_SUCCESS", status
    ui.see_after_reloads("100% completed", timeout=30)
    ui.shot("04_backfill_two_drops")

    timer.lap("6")
    # 6. A contaminated drop lands and is processed; building the recipe fails mixture's blocking
    #    decontamination check, so release is not promoted.
    bad = tmp_path / BAD_DROP
    contaminated_drop(bad)
    land(landing, bad, BAD_DROP)
    bad_runs = wait_until(
        "the sensor to run the contaminated drop",
        lambda: (rs := runs(dev, dagster__partition=BAD_DROP)) and finished(dev, [r["runId"] for r in rs]),
        timeout=RUN_WAIT_S,
        dev=dev,
    )
    assert set(bad_runs.values()) == {"SUCCESS"}, failed_steps(dev, list(bad_runs))
    before = {r["runId"] for r in runs(dev)}
    ui.go("/locations/mmrecipe/jobs/recipe_stages_job")
    page.get_by_role("button", name="Materialize all…").click()
    ui.launch([RECIPE], "Launch 1 run")
    (run_id,) = wait_until("the recipe run", lambda: new_user_runs(dev, before), 30, dev)
    status = wait_until("the recipe run to finish", lambda: finished(dev, [run_id]), timeout=RUN_WAIT_S, dev=dev)
    assert status == {run_id: "FAILURE"}, status
    assert set(step_failures(dev, run_id)) == {"mixture_decontaminated"}, failed_steps(dev, [run_id])
    ui.go(f"/runs/{run_id}")
    ui.see("Failure")
    ui.shot("05_recipe_run_blocked")
    ui.go("/assets/mixture?view=checks")
    page.get_by_text("decontaminated", exact=True).first.click()
    ui.see("Failed")
    ui.see("This is a blocking asset check", exact=False)
    ui.see("en_docs:", exact=False)  # which eval set the mirror leaked, and by how much
    ui.shot("06_failing_blocking_check")
    ui.go("/assets/release")
    ui.see("eager_once_blocking_checks_passed")  # release's automation condition, evaluated by `automation`
    ui.go("/assets/release?view=partitions")
    ui.see("Materialized (0)")
    ui.shot("07_release_not_promoted")
    time.sleep(6)  # one more automation tick (every 5 s here): the failed check must keep release from being requested
    assert partitions_materialized(dev, "release") == 0
    later = [r for r in runs(dev) if r["runId"] not in before | {run_id}]
    assert not [r for r in later if {"path": ["release"]} in (r["assetSelection"] or [])], "release was requested"
    timer.lap("7")
    # 7. With every run finished, dagster dev stops on SIGTERM alone, as the README tells users: webserver, daemon
    #    and code servers all exit cleanly.
    wait_until("every run to finish", lambda: finished(dev, [r["runId"] for r in runs(dev)]), 120, dev)
    pgid = dev.process.pid
    assert dev.stop() == "SIGTERM", dev.log_tail()
    assert process_group_alive(pgid) == []
    log = dev.log.read_text()
    assert "Shutting down Dagster services..." in log and "Dagster services shut down." in log
    assert "did not terminate cleanly" not in log
    timer.lap("end")
