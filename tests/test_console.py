"""Logging and progress: one logging setup with a verbosity flag; progress readable in a log file (no carriage
returns), with count, rate and ETA."""

import logging

from oczss.pipeline.console import progress, rate_text, setup_logging


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


def test_slow_progress_shows_seconds_per_item_and_the_last_line_once(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("OCZSS_PROGRESS_SECONDS", "0")
    setup_logging(0)
    with progress(3, desc="eval voc val", unit="img") as bar:
        bar.start -= 500  # 500 s have passed: 0.002 img/s, which 2 decimals would print as 0.00 img/s
        bar.update(1)
        bar.update(2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert "eval voc val: 1/3 img, 500.0 s/img" in lines[0] and "0.00" not in "".join(lines)
    assert lines == [lines[0], lines[1]] and lines[1].startswith("eval voc val: 3/3 img, 166.7 s/img")
    assert rate_text(2.5, "it") == "2.50 it/s" and rate_text(0.25, "it") == "4.0 s/it"
