"""``devicelink config check`` names the ``DEVICELINK_`` variables nothing reads (issue
16, item 7): a misspelt ``DEVICELINK_PUBLIC_ULR`` used to pass in silence, the server
then serving on its development default."""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import config_check


def warnings_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("devicelink: warning:")]


def test_a_misspelt_setting_is_named_with_the_setting_meant(tmp_path: Path) -> None:
    code, output = config_check(
        {"DEVICELINK_PUBLIC_ULR": "https://login.example.com", "DEVICELINK_LOG_LEVL": "debug"},
        tmp_path,
    )
    assert code == 0, output  # a warning: the configuration itself is still valid
    assert warnings_of(output) == [
        "devicelink: warning: DEVICELINK_LOG_LEVL is not a devicelink setting and is ignored"
        " (did you mean DEVICELINK_LOG_LEVEL?)",
        "devicelink: warning: DEVICELINK_PUBLIC_ULR is not a devicelink setting and is ignored"
        " (did you mean DEVICELINK_PUBLIC_URL?)",
    ]


def test_an_unrelated_name_gets_no_guess(tmp_path: Path) -> None:
    code, output = config_check({"DEVICELINK_COLOUR": "blue"}, tmp_path)
    assert code == 0, output
    assert warnings_of(output) == [
        "devicelink: warning: DEVICELINK_COLOUR is not a devicelink setting and is ignored"
    ]


def test_the_command_lines_and_the_repositorys_own_variables_are_not_named(
    tmp_path: Path,
) -> None:
    code, output = config_check(
        {
            "DEVICELINK_SERVER": "https://login.example.com",  # the CLI's default server
            "DEVICELINK_TOKEN": "dlk_x",  # the CLI's key for scripts
            "DEVICELINK_TEST_POSTGRES": "postgresql://127.0.0.1/postgres",  # the test suite's
            "DEVICELINK_PUBLIC_URL": "http://127.0.0.1:8000",
        },
        tmp_path,
    )
    assert code == 0, output
    assert warnings_of(output) == []
