"""`--native` opens the dashboard in a desktop window (issue #5): `main.py --native` started as a
user would, on a virtual X screen (Debian's Xvfb), with pywebview drawing it through Qt WebEngine
(the `native` extra). Nothing is stood in for: the window's web engine loads the page from the
app's own server, and the screen is read back as pixels.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import main
from core.config import Settings
from core.services import build_services
from tests.app_process import ROOT, AppProcess, clean_env
from tests.waiting import wait_until

SCREEN = (1440, 900)
BRAND_INDIGO = (79, 70, 229)  # ui/theme.py's primary colour: the logo, the active nav link


@pytest.fixture
def display() -> Iterator[str]:
    """A fresh Xvfb screen; `-displayfd` makes the server pick a free display number itself."""
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is missing: apt-get install xvfb (./deck test installs it)")
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    number = server.stdout.readline().strip()
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def windows_named(display: str, name: str) -> list[str]:
    found = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", name],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
    )
    return found.stdout.split()


class _ClientMessage(ctypes.Structure):
    _fields_: ClassVar = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class _XEvent(ctypes.Union):
    _fields_: ClassVar = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


def close_window(display: str, window: int) -> None:
    """What a window manager sends when the user clicks the close button: WM_DELETE_WINDOW."""
    x11 = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(_XEvent)]
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = x11.XOpenDisplay(display.encode())
    assert connection, f"cannot open display {display}"
    event = _XEvent()
    event.xclient.type = 33  # ClientMessage
    event.xclient.window = window
    event.xclient.message_type = x11.XInternAtom(connection, b"WM_PROTOCOLS", 0)
    event.xclient.format = 32
    event.xclient.data[0] = x11.XInternAtom(connection, b"WM_DELETE_WINDOW", 0)
    x11.XSendEvent(connection, window, 0, 0, ctypes.byref(event))
    x11.XFlush(connection)
    x11.XCloseDisplay(connection)


def grab_screen(display: str, path: Path) -> list[tuple[int, int, int]]:
    """The screen's pixels (saved as PNG too), read from the X server like any screenshot tool."""
    import mss
    import mss.tools

    with mss.MSS(display=display) as screen:
        shot = screen.grab(screen.monitors[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        mss.tools.to_png(shot.rgb, shot.size, output=str(path))
        return list(shot.pixels[y][x] for y in range(0, shot.height, 4) for x in range(0, shot.width, 4))


@pytest.mark.native
def test_native_flag_opens_the_dashboard_in_a_desktop_window(tmp_path: Path, display: str) -> None:
    env = {"DISPLAY": display, "AGENTDECK_PRELOAD_RUNTIME": "false"}
    if os.geteuid() == 0:
        # Chromium (inside Qt WebEngine) refuses to run its sandbox as root, as CI does.
        env["QTWEBENGINE_DISABLE_SANDBOX"] = "1"
    data_dir = tmp_path / "data"
    with AppProcess(data_dir, "--native", env=env) as app:
        windows = wait_until(lambda: windows_named(display, "AgentDeck"), 60, "the AgentDeck window")

        # The window's web engine loaded the dashboard from the app's server: building a page for a
        # new user on an empty database creates the `default` workspace.
        services = build_services(Settings(data_dir=data_dir))
        try:
            wait_until(lambda: [w.slug for w in services.workspaces.list()] == ["default"], 60, "the page to be built")
        finally:
            services.db.dispose()

        # And drew it: the brand's indigo (logo, active nav link) is on screen.
        # Like the browser screenshots: committed ones refreshed on purpose, else under test-artifacts/.
        folder = "docs" if os.environ.get("AGENTDECK_UPDATE_SCREENSHOTS") else "test-artifacts"
        shot_path = ROOT / folder / "desktop" / "native-window.png"

        def drawn() -> bool:
            pixels = grab_screen(display, shot_path)
            return sum(1 for p in pixels if max(abs(a - b) for a, b in zip(p, BRAND_INDIGO, strict=True)) < 12) > 20

        wait_until(drawn, 60, f"the dashboard to be drawn in the window (see {shot_path})")

        # Closing the window stops the server, like quitting a desktop app.
        assert app.proc is not None and app.proc.poll() is None, app.log()
        close_window(display, int(windows[0]))
        assert app.proc.wait(timeout=30) == 0, app.log()


# -- refusals: a clear message and exit code 2 instead of a window that never opens -------------
def test_native_without_a_desktop_session_refuses_to_start(tmp_path: Path) -> None:
    env = clean_env(AGENTDECK_DATA_DIR=str(tmp_path))
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "main.py", "--native"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "needs a desktop session" in result.stderr
    assert not (tmp_path / "agentdeck.db").exists()  # refused before touching the data dir


def test_native_as_root_asks_for_a_user_or_an_unsandboxed_web_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QTWEBENGINE_DISABLE_SANDBOX", raising=False)
    with pytest.raises(main.StartupError, match="QTWEBENGINE_DISABLE_SANDBOX=1"):
        main.check_native(Settings(native=True))
    monkeypatch.setenv("QTWEBENGINE_DISABLE_SANDBOX", "1")
    main.check_native(Settings(native=True))
    main.check_native(Settings(native=False))


def test_native_without_pywebview_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "webview" else real_find_spec(name, *a)
    )
    with pytest.raises(main.StartupError, match="uv sync --extra native"):
        main.check_native(Settings(native=True))
