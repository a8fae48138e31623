"""Drive JupyterLab in a real headless browser, for the end-to-end tests (a helper, not a test file).

run_notebook() opens a notebook in JupyterLab 4 through Playwright and Debian's chromium
(tests/tools/ensure-browser.sh installs it; Playwright's own browser download cannot work here),
runs all its cells, saves a screenshot and returns the text of the outputs:

    from support.browser import run_notebook   # tests/ is on pytest's pythonpath (pytest.ini)
    text = run_notebook("http://127.0.0.1:8888/lab?token=TOKEN", "gpubox-sample.ipynb", "reports/lab.png")
    assert "TensorFlow 2.21.0" in text and "Final loss:" in text and "<image/png>" in text

Only 127.0.0.1 is ever contacted: other URLs are refused, and the browser's requests to any other host
are aborted. The notebook opens in a workspace of its own, reset first (/lab/workspaces/gpubox-e2e/...?reset),
so the notebooks of the user's workspace are not reopened (each would start a kernel) and that workspace
is left alone. The notebook is not saved: the run changes only the browser's copy (JupyterLab's autosave,
every 2 minutes by default, could still write it during a long run). Its kernel is shut down at the end,
also after a failure; when the notebook already had a kernel running, that kernel is the one used and shut down.
"""

import logging
import pathlib
import re
import time
import urllib.parse

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ALLOWED_HOST = "127.0.0.1"
WORKSPACE = "gpubox-e2e"
VIEWPORT = {"width": 1400, "height": 900}
MAX_HEIGHT = 15_000  # pixels; chromium cannot capture much more than 16384
LOAD_TIMEOUT_MS = 90_000
# Hides JupyterLab's notifications (such as "get notified about official Jupyter news?") in screenshots.
SCREENSHOT_CSS = ".Toastify { display: none !important; }"
# Renders every cell: in JupyterLab's default windowing mode ("contentVisibility") cells out of view are
# not rendered, so their innerText is empty and a screenshot would show them blank.
PAGE_CSS = ".jp-Notebook .jp-Cell { content-visibility: visible !important; contain: style !important; }"

log = logging.getLogger(__name__)


class JupyterLabError(RuntimeError):
    """JupyterLab did not do what run_notebook() asked; the message includes what the page showed."""


# JavaScript run in the page. Most take the id of the notebook's panel (a Lumino widget id).
# The notebook's panel once open: {id}; {dialog: text} when a dialog (such as "Cannot open") came instead.
_JS_FIND_PANEL = r"""(path) => {
  for (const tab of document.querySelectorAll('.lm-TabBar-tab[data-type="document-title"]')) {
    if ((tab.getAttribute('title') || '').split('\n').includes('Path: ' + path)) {
      const panel = document.getElementById(tab.dataset.id);
      if (panel && panel.classList.contains('jp-NotebookPanel')) return {id: tab.dataset.id};
    }
  }
  const dialog = document.querySelector('.jp-Dialog');
  return dialog ? {dialog: dialog.innerText.trim()} : null;
}"""

# What opening the notebook waits for: 'dialog', 'idle' (a kernel, idle), or '' (not yet).
_JS_KERNEL_STATE = r"""(id) => {
  if (document.querySelector('.jp-Dialog')) return 'dialog';
  const panel = document.getElementById(id);
  const status = panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status || 'unknown';
  const name = panel.querySelector('.jp-KernelName')?.innerText.trim() || '';
  return status === 'idle' && name && name !== 'No Kernel' ? 'idle' : '';
}"""

# Prompts of the code cells: "[1]:", "[*]:" (queued or running) or "[ ]:" (not run).
_JS_PROMPTS = r"""(id) => Array.from(
  document.getElementById(id).querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'),
  (p) => p.textContent.trim())"""

# A run has settled when the kernel is idle, no cell is queued and at least one has run: 'settled'.
# A dialog also ends the wait: 'dialog'.
_JS_RUN_SETTLED = r"""(id) => {
  if (document.querySelector('.jp-Dialog')) return 'dialog';
  const panel = document.getElementById(id);
  const status = panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  const prompts = Array.from(panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'), (p) => p.textContent.trim());
  if (status !== 'idle' || prompts.some((p) => p.includes('*'))) return '';
  return prompts.some((p) => /\[\d+\]/.test(p)) ? 'settled' : '';
}"""

# Outputs of the code cells, one list per cell: the text of each output, "<image/png>" for an image.
_JS_OUTPUTS = r"""(id) => Array.from(
  document.getElementById(id).querySelectorAll('.jp-CodeCell'),
  (cell) => Array.from(cell.querySelectorAll('.jp-OutputArea-output'), (out) => {
    const images = Array.from(out.querySelectorAll('img'), (img) => {
      const m = /^data:([^;,]+)/.exec(img.getAttribute('src') || '');
      return '<' + (m ? m[1] : 'image') + '>';
    });
    return [out.innerText.replace(/\s+$/, ''), ...images].filter(Boolean).join('\n');
  }))"""

# Error outputs look like stderr in the page. An IPython traceback names the cell ("Cell In[2], line 1")
# and ends with "SomeError: message". The 1-based numbers of the code cells that show one.
_JS_ERROR_CELLS = r"""(id) => Array.from(document.getElementById(id).querySelectorAll('.jp-CodeCell'), (cell, i) =>
  Array.from(cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
    .some((out) => {
      const lines = out.innerText.trim().split('\n');
      return lines.some((l) => /^\s*Cell In\[\d+\], line \d+/.test(l)) &&
        /^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Iteration)\b/.test(lines[lines.length - 1]);
    }) ? i + 1 : 0).filter(Boolean)"""

# Height the notebook needs to show all its cells without scrolling, and the height it has.
_JS_NOTEBOOK_HEIGHTS = r"""(id) => {
  const panel = document.getElementById(id);
  const scroller = panel.querySelector('.jp-WindowedPanel-outer') || panel.querySelector('.jp-Notebook');
  const cells = panel.querySelectorAll('.jp-Cell');
  if (!scroller || !cells.length) return null;
  scroller.scrollTop = 0;
  const box = scroller.getBoundingClientRect();
  const last = cells[cells.length - 1].getBoundingClientRect();
  return {needed: Math.ceil(last.bottom - box.top + 40), visible: Math.floor(box.height)};
}"""

_JS_IMAGES_LOADED = r"""(id) => Array.from(document.getElementById(id).querySelectorAll('.jp-OutputArea-output img'))
  .every((img) => img.complete && img.naturalWidth > 0)"""

_JS_PAGE_STATE = r"""() => {
  const text = (el) => (el ? el.innerText.trim() : '');
  const panels = Array.from(document.querySelectorAll('.jp-NotebookPanel')).filter((p) => p.offsetParent);
  return {
    url: location.href,
    title: document.title,
    dialogs: Array.from(document.querySelectorAll('.jp-Dialog'), text),
    notifications: Array.from(document.querySelectorAll('.Toastify__toast'), text),
    kernel: panels.map((p) => text(p.querySelector('.jp-KernelName')) + ': ' +
      (p.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status || '?')),
    prompts: panels.map((p) => Array.from(p.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'), text)),
    text: (panels.length ? panels.map(text).join('\n\n') : text(document.body)).slice(0, 4000),
  };
}"""


def run_notebook(url: str, notebook: str, screenshot: str | pathlib.Path, *,
                 timeout: float = 300.0, shutdown_kernel: bool = True) -> str:
    """Open `notebook` in the JupyterLab at `url`, run all its cells and return the text of their outputs.

    url: JupyterLab's address with its token, such as http://127.0.0.1:8888/lab?token=TOKEN (host 127.0.0.1 only).
    notebook: the notebook's path relative to Jupyter's root directory, such as gpubox-sample.ipynb.
    screenshot: where the PNG of the notebook with its outputs goes (all cells, however tall). It is also
        written when the run fails, showing how far it got.
    timeout: seconds that running all cells may take, from the click on Run All Cells.
    shutdown_kernel: shut the notebook's kernel down at the end (it would hold memory, on a GPU too).

    Returns the outputs of the code cells in order, separated by newlines: stdout and stderr text, results,
    and "<image/png>" (the image's MIME type) for each image.
    Raises JupyterLabError when the page does not load, asks for a login, shows an unexpected dialog,
    or the notebook fails (a cell shows a traceback, or cells were left unrun); its message holds
    the outputs or the page's state: kernel status, cell prompts, dialogs and the visible text.
    """
    tree_url, api_url = _urls(url, notebook)
    screenshot = pathlib.Path(screenshot)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.route("**/*", _only_loopback)
            page = context.new_page()
            page.set_default_timeout(30_000)
            opened: dict[str, str] = {}  # what _run got to: "panel" (its id), "screenshot"
            try:
                return _run(page, tree_url, api_url, notebook, screenshot, timeout, opened)
            except (JupyterLabError, PlaywrightError) as error:
                state = _page_state(page)
                if "screenshot" not in opened:
                    try:
                        page.screenshot(path=str(screenshot), full_page=True, style=SCREENSHOT_CSS)
                    except PlaywrightError:
                        pass
                message = f"{error}\n--- page state ---\n{state}\n(screenshot: {screenshot})"
                message = re.sub(r"token(=|%3D)[^&\s'\"]+", r"token\1...", message)
                raise JupyterLabError(message) from (error if isinstance(error, PlaywrightError) else None)
            finally:
                if shutdown_kernel and "panel" in opened:
                    _shutdown_kernel(page, opened["panel"])
        finally:
            browser.close()


def _urls(url: str, notebook: str) -> tuple[str, str]:
    """BASE/lab/workspaces/WORKSPACE/tree/NOTEBOOK?reset and BASE/api/contents/NOTEBOOK, with the query of url
    (the token) and its scheme, host and base path."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname != ALLOWED_HOST:
        raise ValueError(f"only http(s)://{ALLOWED_HOST}/... URLs are allowed, not {url!r}")
    segments = parts.path.rstrip("/").split("/")
    if "lab" in segments:  # BASE/lab, BASE/lab/tree/x, BASE/lab/workspaces/x: keep BASE
        segments = segments[: segments.index("lab")]
    base, quoted = "/".join(segments), urllib.parse.quote(notebook.lstrip("/"))
    tree = f"{base}/lab/workspaces/{WORKSPACE}/tree/{quoted}"
    tree_query = "&".join(q for q in ("reset", parts.query) if q)
    api_query = "&".join(q for q in ("content=1", parts.query) if q)
    return (urllib.parse.urlunsplit((parts.scheme, parts.netloc, tree, tree_query, "")),
            urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"{base}/api/contents/{quoted}", api_query, "")))


def _only_loopback(route) -> None:
    """Abort the browser's requests to any host but 127.0.0.1."""
    parts = urllib.parse.urlsplit(route.request.url)
    if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != ALLOWED_HOST:
        log.warning("blocked a request to %s", route.request.url)
        route.abort("blockedbyclient")
    else:
        route.continue_()


def _run(page: Page, tree_url: str, api_url: str, notebook: str, screenshot: pathlib.Path, timeout: float,
         opened: dict[str, str]) -> str:
    # One load logs in with the token and opens the notebook in a fresh workspace.
    response = page.goto(tree_url, wait_until="domcontentloaded", timeout=LOAD_TIMEOUT_MS)
    if response is not None and response.status >= 400:
        raise JupyterLabError(f"JupyterLab answered HTTP {response.status} for {notebook}")
    if "/login" in urllib.parse.urlsplit(page.url).path or page.locator("input[type=password]").count():
        raise JupyterLabError("JupyterLab asked for a login: is the token in the URL right?")

    page.add_style_tag(content=PAGE_CSS)

    try:
        found = page.wait_for_function(_JS_FIND_PANEL, arg=notebook, timeout=LOAD_TIMEOUT_MS).json_value()
    except PlaywrightError:
        raise JupyterLabError(f"JupyterLab did not open {notebook} within {LOAD_TIMEOUT_MS // 1000} s") from None
    if "dialog" in found:
        raise JupyterLabError(f"JupyterLab did not open {notebook}: {found['dialog']!r}")
    panel_id = opened["panel"] = found["id"]

    # All code cells must be in the page (JupyterLab's "full" windowing mode leaves out those out of view).
    code_cells = _count_code_cells(page, api_url)
    try:
        page.wait_for_function("([id, n]) => document.getElementById(id).querySelectorAll('.jp-CodeCell').length === n",
                               arg=[panel_id, code_cells], timeout=LOAD_TIMEOUT_MS)
    except PlaywrightError:
        raise JupyterLabError(f"the page does not show all {code_cells} code cells of {notebook}"
                              " (windowingMode 'full' in JupyterLab's notebook settings?)") from None

    _wait_for_kernel(page, panel_id)

    # Start clean: outputs and execution counts saved in the notebook would look like a finished run.
    _menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(f"(id) => ({_JS_PROMPTS})(id).every((p) => !/\\d/.test(p))", arg=panel_id)

    started = time.monotonic()
    _menu(page, "Run", "Run All Cells")
    _wait_for_run(page, panel_id, timeout)
    log.info("ran the cells of %s in %.1f s", notebook, time.monotonic() - started)

    outputs = _join(page.evaluate(_JS_OUTPUTS, panel_id))
    prompts = page.evaluate(_JS_PROMPTS, panel_id)
    failed = page.evaluate(_JS_ERROR_CELLS, panel_id)
    unrun = [i for i, p in enumerate(prompts, 1) if not re.search(r"\[\d+\]", p)]
    _screenshot(page, panel_id, screenshot)
    opened["screenshot"] = str(screenshot)
    if failed or unrun:
        raise JupyterLabError(
            f"running {notebook} failed: code cell(s) {failed or 'none'} raised an error,"
            f" code cell(s) {unrun or 'none'} did not run; prompts {prompts}\n--- outputs ---\n{outputs}")
    return outputs


def _count_code_cells(page: Page, api_url: str) -> int:
    """The number of code cells in the notebook's file, from Jupyter's contents API (the browser's login)."""
    response = page.request.get(api_url)
    if not response.ok:
        raise JupyterLabError(f"Jupyter's contents API answered HTTP {response.status} for the notebook")
    return sum(cell.get("cell_type") == "code" for cell in response.json()["content"]["cells"])


def _wait_for_kernel(page: Page, panel_id: str) -> None:
    """Wait until the notebook's kernel is idle, choosing a kernel when JupyterLab asks for one."""
    deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000
    for _ in range(5):
        left_ms = max(1_000, (deadline - time.monotonic()) * 1000)
        try:
            state = page.wait_for_function(_JS_KERNEL_STATE, arg=panel_id, timeout=left_ms).json_value()
        except PlaywrightError:
            raise JupyterLabError(f"the notebook's kernel was not idle within {LOAD_TIMEOUT_MS // 1000} s") from None
        if state == "idle":
            return
        _answer_kernel_dialog(page)
    raise JupyterLabError("dialogs kept the notebook from getting a kernel")


def _answer_kernel_dialog(page: Page) -> None:
    """Accept JupyterLab's "Select Kernel" dialog with the kernel it proposes (or else the first real one)."""
    dialog = page.locator(".jp-Dialog").first
    text = dialog.inner_text()
    select = dialog.locator("select")
    if not select.count():
        raise JupyterLabError(f"unexpected dialog: {text!r}")
    options = select.locator("option")
    choices = [(options.nth(i).get_attribute("value") or "", options.nth(i).inner_text().strip())
               for i in range(options.count())]

    def real(value: str, label: str) -> bool:
        return bool(value) and "null" not in value and label not in ("No Kernel", "Start Preferred Kernel")

    current = select.input_value()
    if not real(current, dict(choices).get(current, "")):
        kernels = [value for value, label in choices if real(value, label)]
        if not kernels:
            raise JupyterLabError(f"the kernel dialog offers no kernel: {[label for _, label in choices]}")
        select.select_option(kernels[0])
    log.info("kernel dialog: chose %s", select.input_value())
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    dialog.wait_for(state="detached")


def _menu(page: Page, menu: str, item: str) -> None:
    """Click a menu of the menu bar, then one of its items (exact labels)."""
    label = page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$"))
    page.locator(".lm-MenuBar-item", has=label).click()
    entry = page.locator(".lm-Menu-item", has=page.locator(
        ".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")))
    entry.wait_for(state="visible")
    if "lm-mod-disabled" in (entry.get_attribute("class") or ""):
        page.keyboard.press("Escape")
        raise JupyterLabError(f"menu item {menu} > {item} is disabled (is the notebook the current tab?)")
    entry.click()


def _wait_for_run(page: Page, panel_id: str, timeout: float) -> None:
    """Wait until the run has settled (kernel idle, nothing queued), and is still settled a second later."""
    deadline = time.monotonic() + timeout
    while True:
        left_ms = (deadline - time.monotonic()) * 1000
        try:
            if left_ms <= 0:
                raise TimeoutError
            state = page.wait_for_function(_JS_RUN_SETTLED, arg=panel_id, timeout=left_ms, polling=250).json_value()
        except (TimeoutError, PlaywrightError):
            raise JupyterLabError(f"the cells did not finish within {timeout:.0f} s") from None
        if state == "dialog":
            raise JupyterLabError(f"a dialog appeared while the cells ran: {page.locator('.jp-Dialog').first.inner_text()!r}")
        # The kernel can be idle for an instant between two cells, hence the second look.
        page.wait_for_timeout(1_000)
        if page.evaluate(_JS_RUN_SETTLED, panel_id) == "settled":
            return


def _screenshot(page: Page, panel_id: str, path: pathlib.Path) -> None:
    """Make the window tall enough for all the cells, then save a full-page PNG."""
    heights = page.evaluate(_JS_NOTEBOOK_HEIGHTS, panel_id)
    if heights and heights["needed"] > heights["visible"]:
        height = min(VIEWPORT["height"] + heights["needed"] - heights["visible"], MAX_HEIGHT)
        page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        page.wait_for_function(
            f"([id, full]) => {{ const h = ({_JS_NOTEBOOK_HEIGHTS})(id); return full || h.visible >= h.needed; }}",
            arg=[panel_id, height == MAX_HEIGHT])
    page.wait_for_function(_JS_IMAGES_LOADED, arg=panel_id)
    page.screenshot(path=str(path), full_page=True, animations="disabled", style=SCREENSHOT_CSS)


def _shutdown_kernel(page: Page, panel_id: str) -> None:
    """Kernel > Shut Down Kernel. Best effort: a failure here is logged, not raised."""
    try:
        if page.locator(".jp-Dialog").count():
            page.keyboard.press("Escape")
        _menu(page, "Kernel", "Shut Down Kernel")
        page.wait_for_function(
            "(id) => document.getElementById(id).querySelector('.jp-KernelName')?.innerText.trim() === 'No Kernel'",
            arg=panel_id, timeout=15_000)
    except (JupyterLabError, PlaywrightError) as error:
        log.warning("could not shut the kernel down: %s", str(error).splitlines()[0])


def _join(outputs: list[list[str]]) -> str:
    return "\n".join(text for cell in outputs for text in cell)


def _page_state(page: Page) -> str:
    """What the page shows, for error messages: URL, title, dialogs, kernel, prompts and visible text."""
    try:
        state = page.evaluate(_JS_PAGE_STATE)
    except PlaywrightError as error:
        return f"(could not read the page: {error.message.splitlines()[0]})"
    return "\n".join(f"{key}: {value}" for key, value in state.items())
