"""Logging and progress: one logging setup with a verbosity flag; progress readable in a log file (no carriage
returns), with count, rate and ETA."""

import logging

from oczss.pipeline.console import progress, setup_logging


def test_progress_in_a_log_file_is_plain_lines_with_rate_and_eta(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("OCZSS_PROGRESS_SECONDS", "0")
    setup_logging(0)
    with progress(4, desc="precompute demo", unit="img") as bar:  # stderr is not a terminal under pytest
        for _ in range(2):
            bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "precompute demo: 1/4 img" in err and "img/s" in err and "ETA" in err
    assert err.strip().splitlines()[-1].startswith("precompute demo: 2/4 img")


def test_quiet_shows_warnings_only_and_python_warnings_lose_their_source_line(capsys):
    import warnings

    setup_logging(-1)
    logging.getLogger("oczss.test").info("a progress note")
    logging.getLogger("oczss.test").warning("a real problem")
    warnings.warn("something odd")
    err = capsys.readouterr().err
    assert "a progress note" not in err and "warning: a real problem" in err
    assert "warning: something odd" in err and "test_console.py" not in err
