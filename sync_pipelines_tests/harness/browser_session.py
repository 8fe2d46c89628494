"""A page a test acts on, as a person would: headless Chromium (``harness.browser``'s) driven over its DevTools
pipe, to click what a dump of the DOM cannot (the Dagster UI's "[Show Markdown]", whose table opens in a dialog).

``--remote-debugging-pipe`` makes Chromium read DevTools commands from its fd 3 and answer on its fd 4, one JSON
message per NUL-terminated record: the standard library is the whole client (no driver, no CDP library). A small
Python ``exec`` hands Chromium the two pipes as fds 3 and 4. Every wait is bounded, the browser runs in a session of its
own with a throwaway profile, and leaving the session kills its whole process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from sync_pipelines_tests.harness.browser import BrowserError, RenderedPage, chromium_path, visible_text

POLL_SECONDS = 0.25
# Runs argv[3:] with the pipes argv[1] and argv[2] as its fds 3 and 4 (moved above 9 first, so neither is closed
# by the other's dup2 whatever their numbers; a shell's ``3<&N`` takes single-digit fds only).
AS_FDS_3_AND_4 = (
    "import fcntl, os, sys\n"
    "high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]\n"
    "os.dup2(high[0], 3)\n"
    "os.dup2(high[1], 4)\n"
    "os.execvp(sys.argv[3], sys.argv[3:])\n"
)

# The element showing ``text`` exactly (the innermost one), in the table row whose first cell reads ``label``
# (a metadata entry's row); clicked, and whether one was found.
CLICK_IN_ROW = """
(() => {
  const [label, text] = %s;
  const hits = [...document.querySelectorAll('body *')].filter(
    (e) => e.children.length === 0 && e.textContent.trim() === text);
  const hit = hits.find((e) => {
    const row = e.closest('tr');
    return row && row.firstElementChild && row.firstElementChild.textContent.trim() === label;
  });
  if (!hit) return false;
  hit.click();
  return true;
})()
"""


class BrowserSession:
    """One headless Chromium, commanded over its DevTools pipe."""

    def __init__(self, timeout: float = 60, browser: str | None = None) -> None:
        self.timeout = timeout
        self.executable = browser or chromium_path()
        if self.executable is None:
            raise BrowserError("Chromium is not installed (./dev setup installs Debian's chromium package)")
        self._next_id = 0
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._profile = tempfile.mkdtemp(prefix="sync-browser-")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BrowserSession:
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        command = [
            self.executable,
            "--headless=new",
            "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--mute-audio",
            "--window-size=1400,2000",
            f"--user-data-dir={self._profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-c", AS_FDS_3_AND_4, str(commands_read), str(replies_write), *command],
            pass_fds=(commands_read, replies_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "HOME": self._profile},
        )
        os.close(commands_read)
        os.close(replies_write)
        threading.Thread(target=self._read_replies, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for fd in (self._commands, self._replies):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_replies(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._replies, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self._answers.put(None)
                return
            buffer += chunk
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                self._answers.put(json.loads(message))

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """One DevTools command; its result, waited for at most ``timeout`` seconds."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                answer = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BrowserError(f"Chromium did not answer {method} within {self.timeout} s") from None
            if answer is None:
                raise BrowserError(f"Chromium exited while answering {method}")
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def open(self, url: str) -> str:
        """A new tab on ``url``; its DevTools session id."""
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        return str(self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"])

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
        )
        return result.get("result", {}).get("value")

    def page(self, session: str, url: str) -> RenderedPage:
        dom = str(self.evaluate(session, "document.documentElement.outerHTML") or "")
        return RenderedPage(url, dom, visible_text(dom))

    def wait_for_text(self, session: str, url: str, *wanted: str, timeout: float = 60) -> RenderedPage:
        """The page once every one of ``wanted`` is in its text (polled; the last page after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            shown = self.page(session, url)
            if all(item in shown.text for item in wanted) or time.monotonic() > deadline:
                return shown
            time.sleep(POLL_SECONDS)

    def click_in_row(self, session: str, label: str, text: str, timeout: float = 30) -> bool:
        """Click the element reading ``text`` in the row labelled ``label`` once it is there (polled)."""
        deadline = time.monotonic() + timeout
        argument = json.dumps([label, text])
        while not self.evaluate(session, CLICK_IN_ROW % argument):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True
