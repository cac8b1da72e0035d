"""End to end: the explorer notebook in JupyterLab 4, in a real (headless) Chromium.

The test trains the smoke-scale model into a temporary ``runs/``, starts JupyterLab on
127.0.0.1 with a random token and fresh config/runtime folders (the venv's prebuilt
``@jupyter-widgets/jupyterlab-manager`` extension is what renders the widgets: nothing is
built), opens a copy of ``notebooks/explore.ipynb`` pointed at that ``runs/``, runs all cells,
moves the scaling slider with the keyboard, clicks *Run*, and checks that the rendered results
table changed; then clicks *Sweep* (the scaling factor over 2^0..2^5, Fig A.2), waits for the
sweep to finish and checks, on the *History* tab, that the table of every condition tried grew by
one row per value. Screenshots are saved as ``<tmp_path>/explorer.png`` and
``<tmp_path>/explorer-history.png``.

Chromium is Debian's package (``scripts/setup.sh`` installs it when it can); the test skips,
saying so, only when no Chromium executable is found.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from maml_probe.explorer import train_smoke_model

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
WAIT_S = 120  # every wait is bounded, so a broken front end fails instead of hanging CI

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    pytest.skip("Chromium not found (looked for `chromium` on PATH and /usr/bin/chromium): "
                "scripts/setup.sh installs Debian's package when run as root with apt-get; "
                "without it the browser test cannot run")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_notebook(folder: Path, runs_root: Path) -> Path:
    nb = json.loads(NOTEBOOK.read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = [f"runs_root = {str(runs_root)!r}\n", "checkpoint = None\n",
                              "data_root = None\n"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "explore.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    return path


def _start_lab(tmp_path: Path, root_dir: Path, port: int, token: str) -> subprocess.Popen:
    env = dict(os.environ)
    jup = tmp_path / "jupyter"
    # no "get official Jupyter news?" toast over the notebook
    news = jup / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    env.update({
        "JUPYTER_CONFIG_DIR": str(jup / "config"), "JUPYTER_DATA_DIR": str(jup / "data"),
        "JUPYTER_RUNTIME_DIR": str(jup / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(jup / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(jup / "lab-workspaces"),
        "IPYTHONDIR": str(jup / "ipython"), "MPLCONFIGDIR": str(jup / "mpl"),
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",  # 2-core CI: no oversubscription
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    })
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
           "--ServerApp.port_retries=0", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log = open(tmp_path / "jupyterlab.log", "w")
    return subprocess.Popen(cmd, env=env, cwd=root_dir, stdout=log, stderr=subprocess.STDOUT)


def _wait_for_server(proc: subprocess.Popen, port: int, token: str, log: Path) -> None:
    end = time.monotonic() + WAIT_S
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"JupyterLab did not answer within {WAIT_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _wait_until(predicate, what: str, page, timeout: float = WAIT_S) -> None:
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except Exception as exc:  # element detached while re-rendering: try again
            last = exc
        page.wait_for_timeout(200)
    status = page.locator(".maml-explorer-status").all_inner_texts()
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (status: {status}; {last})")


def _accept_kernel_dialog(page) -> None:
    """A "Select Kernel" dialog (Run All before the session was ready): take the preferred one."""
    button = page.locator(".jp-Dialog button", has_text=re.compile(r"^Select$"))
    if button.count() and button.first.is_visible():
        button.first.click()


def _kernel_idle(port: int, token: str) -> bool:
    """Whether the server has a session for the notebook whose kernel is idle."""
    url = f"http://127.0.0.1:{port}/api/sessions?token={token}"
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            sessions = json.loads(r.read())
    except OSError:
        return False
    return any(s.get("path", "").endswith("explore.ipynb")
               and (s.get("kernel") or {}).get("execution_state") == "idle" for s in sessions)


def _run_all_cells(page, port: int, token: str) -> None:
    """Run > Run All Cells once the notebook's kernel is up; again if the explorer did not appear
    (a run issued while the front end was still connecting can be dropped). Bounded."""
    _wait_until(lambda: _kernel_idle(port, token), "the notebook's kernel", page)
    page.wait_for_timeout(1000)  # the front end connects its websocket after the session exists
    explorer = page.locator(".maml-explorer")
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        _accept_kernel_dialog(page)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        for _ in range(150):  # 30 s for the explorer to appear
            _accept_kernel_dialog(page)
            if explorer.count():
                return
            page.wait_for_timeout(200)
    pytest.fail(f"Run All Cells did not bring up the explorer within {WAIT_S} s")


def test_explorer_notebook_in_jupyterlab(tmp_path):
    chromium = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")

    runs_root = tmp_path / "runs"
    train_smoke_model(runs_root)                 # E1 LinNet, smoke scale: a few seconds
    root_dir = tmp_path / "lab"
    _prepare_notebook(root_dir, runs_root)
    port, token = _free_port(), secrets.token_hex(16)
    proc = _start_lab(tmp_path, root_dir, port, token)
    shot = tmp_path / "explorer.png"
    history_shot = tmp_path / "explorer-history.png"
    try:
        _wait_for_server(proc, port, token, tmp_path / "jupyterlab.log")
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                        timeout=WAIT_S * 1000)
            page = browser.new_page(viewport={"width": 1300, "height": 1500})
            page.set_default_timeout(WAIT_S * 1000)
            try:
                page.goto(f"http://127.0.0.1:{port}/lab/tree/explore.ipynb?token={token}")
                page.wait_for_selector(".jp-Notebook .jp-Cell")
                page.keyboard.press("Control+b")  # hide the file browser: room for the explorer
                _run_all_cells(page, port, token)
                explorer = page.locator(".maml-explorer")
                explorer.wait_for(state="visible")
                status = page.locator(".maml-explorer-status")
                table = page.locator("table.maml-explorer-results")
                _wait_until(lambda: table.count() == 1 and status.inner_text().startswith("done"),
                            "the first result", page)
                before = table.inner_text()
                assert "current (#1)" in before and "all adapt" in before, before

                # switch "update on change" off, so that what changes the output is the click
                page.locator(".maml-explorer-auto input[type=checkbox]").uncheck()
                # move the scaling slider (H1, pre) from 2^0 to 2^2 with the keyboard: four
                # half-steps of the exponent
                handle = page.locator(".maml-explorer-scale .noUi-handle")
                handle.focus()
                for _ in range(4):
                    handle.press("ArrowRight")
                readout = page.locator(".maml-explorer-scale .widget-readout")
                _wait_until(lambda: float(readout.inner_text().strip()) == 4.0,
                            "the slider readout to show 4", page)
                page.wait_for_timeout(1000)
                assert table.inner_text() == before, "the output changed before Run was clicked"
                page.locator(".maml-explorer-run").click()

                def settled() -> bool:
                    return (status.inner_text().startswith("done (#2)")
                            and "H1×4 pre" in table.inner_text())

                _wait_until(settled, "run #2 with H1 × 4 pre-adaptation", page)
                page.wait_for_timeout(500)  # let the plot image swap in before the screenshot
                after = table.inner_text()
                explorer.scroll_into_view_if_needed()
                page.screenshot(path=str(shot), full_page=True)
                # the pre/post toggles say when the scaling is applied
                when = page.locator(".maml-explorer-scale-when").inner_text()
                assert "before adaptation" in when and "after adaptation" in when, when

                # one click: the scaling factor over 2^0..2^5, six runs into the history
                values = page.locator(".maml-explorer-sweep-values input")
                assert values.input_value() == "1, 2, 4, 8, 16, 32"
                page.locator(".maml-explorer-sweep").click()
                _wait_until(lambda: status.inner_text().startswith("done (#3–#8): sweep"),
                            "the sweep's six runs", page)
                page.locator(".maml-explorer-tabs .lm-TabBar-tab",
                             has_text=re.compile(r"^History$")).click()
                history_rows = page.locator("table.maml-explorer-history tbody tr")
                _wait_until(lambda: history_rows.count() == 8, "eight rows in the history", page)
                history = history_rows.all_inner_texts()
                page.wait_for_timeout(500)
                page.screenshot(path=str(history_shot), full_page=True)
            except BaseException:
                page.screenshot(path=str(tmp_path / "explorer-failure.png"), full_page=True)
                raise
            finally:
                browser.close()
    finally:
        _stop(proc)

    assert after != before
    rows = after.splitlines()
    current = next(r for r in rows if r.startswith("current (#2)"))
    previous = next(r for r in rows if r.startswith("previous (#1)"))
    assert "H1×4 pre" in current, after
    assert "all adapt · 1 step" in previous and "×" not in previous, after
    # pre-adaptation accuracy is the same tasks and, for a bias-free LinNet scaled in H1, the same
    # predictions; the post-adaptation accuracy is what the scaling changed
    pre = lambda row: row.split("\t")[3]
    assert pre(current) == pre(previous), after
    assert shot.exists() and shot.stat().st_size > 10_000
    # newest first: the six sweep points (#8..#3), then the two single runs
    numbers = [row.split("\t")[0].strip() for row in history]
    assert numbers == ["8", "7", "6", "5", "4", "3", "2", "1"], history
    assert all("sweep 1: scale_factor" in row for row in history[:6]), history
    assert "H1×32 pre" in history[0] and "H1×4 pre" in history[-2], history
    assert history_shot.exists() and history_shot.stat().st_size > 10_000
