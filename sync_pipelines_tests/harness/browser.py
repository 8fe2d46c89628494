"""A page as a person sees it: a URL rendered by headless Chromium (Debian's ``chromium``), its DOM after the page's
scripts ran and the text it shows.

The Dagster UI is a single-page app: the HTML the webserver sends is empty and the page fills itself from GraphQL.
``--dump-dom`` with a virtual-time budget lets the page's scripts and requests run before the DOM is printed; what a
test waits for (a run id, an asset key) is checked in the text, and the page loaded again with a larger budget while
it is missing, a bounded number of times. No driver or CDP library is needed, and each load is one process that
is always ended (its whole process group) within a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser

# Debian's package installs /usr/bin/chromium; other distributions name it chromium-browser.
BROWSER_NAMES = ("chromium", "chromium-browser")
HIDDEN_ELEMENTS = {"script", "style", "noscript", "template", "head", "title", "svg"}
VOID_ELEMENTS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
BLOCK_ELEMENTS = {
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset", "figcaption", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "table", "tbody", "td", "th", "thead", "tr", "ul", "button", "label",
}  # fmt: skip


def chromium_path() -> str | None:
    """The Chromium executable on PATH, or None where it is not installed (devkit/install/chromium.sh)."""
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def hidden_by(attribute: str, value: str | None) -> bool:
    return attribute == "hidden" or (attribute == "aria-hidden" and value == "true")


class VisibleText(HTMLParser):
    """The text a reader sees: text outside scripts, styles and hidden elements, one line per block element."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_ELEMENTS:
            if not self.hidden_depth and tag in BLOCK_ELEMENTS:
                self.parts.append("\n")
            return
        # Inside a hidden element every open tag is counted, so its end tag is known when the depth is back at 0.
        if (
            self.hidden_depth
            or tag in HIDDEN_ELEMENTS
            or any(hidden_by(name, value) for name, value in attrs)
        ):
            self.hidden_depth += 1
        elif tag in BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_ELEMENTS:
            return
        if self.hidden_depth:
            self.hidden_depth -= 1
        elif tag in BLOCK_ELEMENTS:
            self.parts.append("\n")
        else:  # inline elements side by side (a tag's name and value) stay apart
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.hidden_depth:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        return "\n".join(line for line in lines if line)


def visible_text(dom: str) -> str:
    parser = VisibleText()
    parser.feed(dom)
    parser.close()
    return parser.text()


@dataclass(frozen=True)
class RenderedPage:
    url: str
    dom: str
    text: str


class BrowserError(AssertionError):
    pass


def dump_dom(url: str, budget_ms: int, timeout: float, browser: str | None = None) -> str:
    """One headless load of ``url``: the DOM once ``budget_ms`` of the page's virtual time has passed.

    Virtual time only advances while the page has no request in flight, so the budget is spent after the page's
    GraphQL answers came back. The browser runs in a session of its own with a throwaway profile; it and its
    renderer/GPU/zygote children are killed when the timeout passes, and the profile removed in any case."""
    executable = browser or chromium_path()
    if executable is None:
        raise BrowserError("Chromium is not installed (./dev setup installs Debian's chromium package)")
    with tempfile.TemporaryDirectory(prefix="sync-browser-") as profile:
        command = [
            executable,
            "--headless=new",
            "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--mute-audio",
            "--window-size=1400,2000",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "HOME": profile},
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"Chromium did not finish loading {url} within {timeout} s") from None
        finally:
            # The browser's helper processes share its session: end them all, whatever happened.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    if process.returncode != 0 and not out.strip():
        detail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise BrowserError(f"Chromium exited {process.returncode} loading {url}: {' | '.join(detail)}")
    return out.decode(errors="replace")


def render(
    url: str,
    wait_for: Iterable[str] = (),
    budgets_ms: Iterable[int] = (5_000, 15_000, 30_000),
    timeout: float = 60,
) -> RenderedPage:
    """``url`` as shown once its data has loaded: loaded again with a larger virtual-time budget while any of
    ``wait_for`` is missing from the visible text; the last load is returned either way (the caller's asserts
    then show what the page held)."""
    wanted = list(wait_for)
    page = RenderedPage(url, "", "")
    for budget in budgets_ms:
        dom = dump_dom(url, budget, timeout)
        page = RenderedPage(url, dom, visible_text(dom))
        if all(item in page.text for item in wanted):
            break
    return page
