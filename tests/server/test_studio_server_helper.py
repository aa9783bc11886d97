"""The test servers' helper: a server whose free port was taken before uvicorn bound it must not
take the other server's answers as its own (two CI runs failed that way: the refused-upload tests
talked to another test's studio, with other limits)."""

from __future__ import annotations

from tests.helpers.server import StudioServer


def test_a_server_that_lost_its_port_moves_to_another_and_talks_to_itself(tmp_path):
    with StudioServer(tmp_path / "a") as first:
        second = StudioServer(tmp_path / "b")
        second._use_port(first.port)  # as if free_port() had handed out the port `first` now holds
        with second:
            assert second.port != first.port
            assert second._listening() and first._listening()
            assert "address already in use" in (tmp_path / "b" / f"server-{first.port}.log").read_text().lower()
