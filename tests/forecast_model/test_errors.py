"""How messages quote input: bounded whatever the input, so one bad file cannot flood logs and states."""

from __future__ import annotations

import os
from pathlib import Path

from forecast_model.errors import MAX_MESSAGE_CHARS, ConfigurationError, path_kind, shorten, shorten_names


def test_shorten_cuts_a_long_value_before_quoting_it_and_says_how_much_is_left() -> None:
    assert shorten("abc") == "'abc'" and shorten(7) == "7"
    text = shorten("\0" * 10**8)
    assert len(text) < 1000 and text.endswith("(99,999,800 more characters)")
    assert shorten(list(range(1000)), limit=20) == "[0, 1, 2, 3, 4, 5, 6... (4,870 more characters)"


def test_shorten_names_shows_twenty_names_of_bounded_length() -> None:
    shown = shorten_names(["x" * 10_000, *map(str, range(100))])
    assert shown.endswith(", ... and 81 more]") and shown.count("'") == 40 and len(shown) < 1000


def test_a_configuration_error_is_cut_in_its_middle_keeping_the_fix() -> None:
    message = str(ConfigurationError("Problem: " + "y" * 10**7 + " Fix: do this."))
    assert len(message) < MAX_MESSAGE_CHARS + 100 and "(9,996,023 characters cut)" in message
    assert message.startswith("Problem: yyy") and message.endswith("yyy Fix: do this.")
    assert str(ConfigurationError("short")) == "short"


def test_path_kind_tells_what_a_path_is_without_opening_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")  # opening it would block this test
    (tmp_path / "file").write_text("x")
    kinds = {name: path_kind(tmp_path / name) for name in ("pipe", "file", "none")}
    assert kinds == {"pipe": "a named pipe (FIFO)", "file": "a regular file", "none": "missing"}
    assert path_kind(tmp_path) == "a directory" and path_kind(Path("/dev/null")) == "a character device"
