"""The test helper stops `dagster dev` cleanly with SIGTERM: webserver, daemon and code servers all exit."""

from pathlib import Path

import pytest

from tests.ui.dagster_dev import dagster_dev, process_group_alive

pytestmark = pytest.mark.slow


def test_dagster_dev_stops_on_sigterm_without_sigkill(tmp_path: Path) -> None:
    with dagster_dev(tmp_path / "home") as dev:
        pgid = dev.process.pid
        assert len(process_group_alive(pgid)) >= 3  # dagster dev, webserver, daemon (and code servers)
    assert dev.stopped_by == "SIGTERM", dev.log_tail()
    assert process_group_alive(pgid) == []
    log = dev.log.read_text()
    assert "Shutting down Dagster services..." in log and "Dagster services shut down." in log
    assert "did not terminate cleanly" not in log
