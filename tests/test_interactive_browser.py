"""The interactive page in a real browser: headless Chromium driven by Selenium draws a mask with mouse
events, propagates, corrects one frame, exports, and checks the exported masks' values. Takes the
screenshots docs/interactive.md shows: into the folder PCVOS_SCREENSHOTS names
(``PCVOS_SCREENSHOTS=docs/images pytest tests/test_interactive_browser.py`` renews the page's pictures), else into
the test's temporary folder, so a test run leaves the checkout as it was. Skips (one line) where Chromium or
chromedriver is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import interactive_demo
from dataset import synthetic as syn

H, W = 96, 160
FRAMES = 10


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


CHROMIUM = _find("chromium", "/usr/bin/chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _find("chromedriver", "/usr/bin/chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("no chromium/chromedriver found (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    root = tmp_path_factory.mktemp("browser")
    config = syn.SyntheticConfig(num_frames=FRAMES, height=H, width=W, num_objects=2, num_distractors=0)
    video = syn.generate_video(config)
    syn.write_mp4(root / "clip.mp4", list(video.frames))
    args = interactive_demo.parse_args(
        ["--model", "recipe", "--device", "cpu", "--workdir", str(root / "sessions"), "--size", "-1", "-L", "3"]
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(interactive_demo.build_app(args), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield {"url": f"http://127.0.0.1:{port}/", "root": root, "video": video}
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _client_point(driver, x: float, y: float) -> tuple[int, int]:
    """Video pixel (x, y) -> viewport coordinates of the canvas (the page's own mapping, inverted)."""
    return tuple(driver.execute_script(
        """const c = document.getElementById('canvas'), r = c.getBoundingClientRect();
           const s = Math.min(r.width / c.width, r.height / c.height);
           const left = r.left + (r.width - c.width * s) / 2, top = r.top + (r.height - c.height * s) / 2;
           return [Math.round(left + (arguments[0] + 0.5) * s), Math.round(top + (arguments[1] + 0.5) * s)];""",
        x, y,
    ))


def _drag(driver, points: list[tuple[float, float]]) -> None:
    actions = ActionChains(driver)
    pointer = actions.w3c_actions.pointer_action
    pointer.move_to_location(*_client_point(driver, *points[0]))
    pointer.pointer_down()
    for point in points[1:]:
        pointer.move_to_location(*_client_point(driver, *point))
    pointer.pointer_up()
    actions.perform()


def _click(driver, point: tuple[float, float], double: bool = False) -> None:
    actions = ActionChains(driver)
    pointer = actions.w3c_actions.pointer_action
    pointer.move_to_location(*_client_point(driver, *point))
    pointer.click()
    if double:
        pointer.double_click()
    actions.perform()


def _set_brush(driver, radius: int) -> None:
    driver.execute_script(
        "const b = document.getElementById('brush'); b.value = arguments[0]; b.dispatchEvent(new Event('input'))",
        radius,
    )


def _wait(driver, script: str, timeout: float = 120):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))
    except Exception:
        page = driver.execute_script(
            "return [document.getElementById('error').textContent, document.getElementById('status').textContent,"
            " document.getElementById('job-label').textContent]")
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        raise AssertionError(f"page never satisfied {script!r}; error/status/job: {page}; console: {logs}") from None


def _annotation(server, session_id: str, frame: int) -> np.ndarray:
    path = server["root"] / "sessions" / session_id / "annotations" / f"{frame:05d}.png"
    return np.array(Image.open(path))


def test_draw_propagate_correct_export(server, browser, tmp_path):
    driver = browser
    shots = Path(os.environ.get("PCVOS_SCREENSHOTS") or tmp_path)
    driver.get(server["url"])
    driver.find_element(By.ID, "open-path").send_keys(str(server["root"] / "clip.mp4"))
    driver.find_element(By.ID, "open-button").click()
    _wait(driver, "return !!(window.pcvos.session && window.pcvos.image && window.pcvos.mask)")
    session_id = driver.execute_script("return window.pcvos.session.id")

    # object 1: a polygon around the first object's bounding box at frame 0
    truth = server["video"].masks[0]
    ys, xs = np.nonzero(truth == 1)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    driver.find_element(By.ID, "add-object").click()
    _wait(driver, "return window.pcvos.session.objects.length === 1")
    driver.find_element(By.CSS_SELECTOR, 'input[value="polygon"]').click()
    corners = [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])]
    for corner in corners[:-1]:
        _click(driver, corner)
    _click(driver, corners[-1], double=True)
    _wait(driver, "return window.pcvos.session.annotated.includes(0)")
    drawn = _annotation(server, session_id, 0)
    expected = np.zeros((H, W), bool)
    expected[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
    assert set(np.unique(drawn)) == {0, 1}
    assert ((drawn == 1) == expected).mean() > 0.97, "the polygon does not cover the box it was drawn around"

    # object 2: a brush stroke (radius 6) across the second object
    ys, xs = np.nonzero(truth == 2)
    cy, cx = float(ys.mean()), float(xs.mean())
    driver.find_element(By.ID, "add-object").click()
    _wait(driver, "return window.pcvos.session.objects.length === 2 && window.pcvos.object === 2")
    driver.find_element(By.CSS_SELECTOR, 'input[value="paint"]').click()
    _set_brush(driver, 6)
    _drag(driver, [(cx - 10, cy), (cx, cy), (cx + 10, cy)])
    _wait(driver, "return window.pcvos.maskSource === 'annotation' && window.pcvos.undo.length === 2")
    time.sleep(0.5)  # the PUT of the stroke
    drawn = _annotation(server, session_id, 0)
    stroke = drawn == 2
    assert 320 < stroke.sum() < 390, f"a 20 px stroke of radius 6 covers about 353 pixels, not {stroke.sum()}"
    assert abs(np.nonzero(stroke)[0].mean() - cy) < 2 and abs(np.nonzero(stroke)[1].mean() - cx) < 2
    shots.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(shots / "interactive-annotate.png"))
    first_annotation = _annotation(server, session_id, 0)

    # propagate forward from frame 0
    driver.find_element(By.ID, "propagate-forward").click()
    _wait(driver, "return window.pcvos.timings.finished === 'done'")
    assert driver.execute_script("return window.pcvos.timings.firstMaskMs") > 0
    assert driver.save_screenshot(str(shots / "interactive-propagated.png"))

    # correct frame 5: a blob of object 1 where nothing was
    assert driver.execute_script("return window.pcvos.frame") == FRAMES - 1, "the view follows the propagation"
    driver.execute_script("document.getElementById('canvas').focus()")
    for _ in range(FRAMES - 1 - 5):
        ActionChains(driver).send_keys(Keys.ARROW_LEFT).perform()
    _wait(driver, "return window.pcvos.frame === 5 && window.pcvos.maskSource === 'propagated'")
    driver.find_element(By.XPATH, '//span[@class="object" and @data-id="1"]').click()
    _set_brush(driver, 8)
    _drag(driver, [(20, H - 20), (30, H - 20)])
    _wait(driver, "return window.pcvos.session.annotated.includes(5)")
    time.sleep(0.3)
    corrected = _annotation(server, session_id, 5)
    assert (corrected[H - 20, 20:31] == 1).all()
    driver.find_element(By.ID, "propagate-forward").click()
    _wait(driver, "return window.pcvos.timings.finished === 'done'")

    # export and check the masks' values
    driver.find_element(By.ID, "export").click()
    link = _wait(driver, "const a = document.getElementById('download-zip'); return a && a.href")
    with urllib.request.urlopen(link, timeout=30) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    names = sorted(archive.namelist())
    assert names == [f"masks/{i:05d}.png" for i in range(FRAMES)] + ["overlay.mp4"]
    masks = {}
    for i in range(FRAMES):
        image = Image.open(io.BytesIO(archive.read(f"masks/{i:05d}.png")))
        assert image.mode == "P"
        masks[i] = np.array(image)
    # an annotated frame's mask is its annotation, pixel for pixel
    assert np.array_equal(masks[0], first_annotation)
    assert np.array_equal(masks[5], corrected)
    for i in range(1, FRAMES):
        assert set(np.unique(masks[i])) <= {0, 1, 2} and (masks[i] == 1).any(), f"frame {i}: {np.unique(masks[i])}"
    folder = server["root"] / "sessions" / session_id / "exports" / "masks"
    for i in range(FRAMES):
        assert archive.read(f"masks/{i:05d}.png") == (folder / f"{i:05d}.png").read_bytes()
    assert driver.save_screenshot(str(shots / "interactive-export.png"))
