"""Which flow a login runs: the loopback flow where a browser can open on this machine
and the server offers it, the device flow otherwise (DESIGN.md, "Same-device sign-in")."""

from __future__ import annotations

import pytest

from devicelink.client import make_auth_group
from devicelink.client.api import LoginMethod, browser_plausible, choose_method
from devicelink.client.errors import DiscoveryFailed
from devicelink.client.messages import CodeGrant, Endpoints

from .scripted import SERVER

DEVICE_ONLY = Endpoints(SERVER, f"{SERVER}/oauth/device/authorize", f"{SERVER}/oauth/token")
BOTH = Endpoints(
    SERVER,
    f"{SERVER}/oauth/device/authorize",
    f"{SERVER}/oauth/token",
    code_grant=CodeGrant(f"{SERVER}/oauth/authorize", SERVER, iss_parameter=True),
)
SSH = {"SSH_CONNECTION": "10.0.0.1 50000 10.0.0.2 22"}

ENVIRONMENTS = [
    # platform, environment, a browser can open here
    pytest.param("linux", {}, False, id="linux-headless"),
    pytest.param("linux", {"BROWSER": "firefox"}, True, id="linux-BROWSER"),
    pytest.param("linux", {"BROWSER": ""}, False, id="linux-BROWSER-empty"),
    pytest.param("linux", {"DISPLAY": ":0"}, True, id="linux-x11"),
    pytest.param("linux", {"WAYLAND_DISPLAY": "wayland-0"}, True, id="linux-wayland"),
    pytest.param("linux", {"DISPLAY": ":0"} | SSH, False, id="linux-x11-over-ssh"),
    pytest.param("linux", {"BROWSER": "firefox"} | SSH, False, id="linux-BROWSER-over-ssh"),
    pytest.param("linux", {"SSH_TTY": "/dev/pts/1", "DISPLAY": ":10"}, False, id="ssh-x-forward"),
    pytest.param("darwin", {}, True, id="macos"),
    pytest.param("darwin", SSH, False, id="macos-over-ssh"),
    pytest.param("win32", {}, True, id="windows"),
    pytest.param("win32", {"SSH_TTY": "windows-pty"}, False, id="windows-over-ssh"),
    pytest.param("freebsd14", {"BROWSER": "chrome"}, True, id="bsd-BROWSER"),
]


@pytest.mark.parametrize(("platform", "env", "here"), ENVIRONMENTS)
def test_auto_picks_loopback_exactly_where_a_browser_opens_here(
    platform: str, env: dict[str, str], here: bool
) -> None:
    assert browser_plausible(env, platform) is here
    browser_here = browser_plausible(env, platform)
    assert choose_method("auto", BOTH, browser_here=browser_here) == (
        "loopback" if here else "device"
    )
    # A server without the code grant: the device flow, wherever this runs.
    assert choose_method("auto", DEVICE_ONLY, browser_here=browser_here) == "device"


@pytest.mark.parametrize("browser_here", [True, False])
def test_an_explicit_method_is_obeyed(browser_here: bool) -> None:
    assert choose_method("device", BOTH, browser_here=browser_here) == "device"
    assert choose_method("loopback", BOTH, browser_here=browser_here) == "loopback"
    with pytest.raises(DiscoveryFailed, match="does not offer sign-in in a browser"):
        choose_method("loopback", DEVICE_ONLY, browser_here=browser_here)


def test_an_unknown_method_is_refused() -> None:
    bogus: LoginMethod = "browser"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="auto, loopback, device"):
        choose_method(bogus, BOTH, browser_here=True)
    with pytest.raises(ValueError, match="auto, loopback, device"):
        make_auth_group(method=bogus)  # when the host CLI is built, not at its first login
