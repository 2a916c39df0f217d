"""The web page at ``/``: served open and self-contained, and used in headless Chromium — a
text typed (``?text=``) and a digit drawn with the mouse come back as predictions, and the live
numbers from /metrics show up. The browser tests skip where ``/usr/bin/chromium`` is absent."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dlhpc.serve.app import create_app
from dlhpc.serve.config import ServeConfig
from tests.test_serve_support import EchoPredictor, WordCountPredictor, live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")


def sha256_source(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def test_the_page_is_self_contained_and_posts_to_predict() -> None:
    with TestClient(create_app(EchoPredictor(), ServeConfig(name="m"))) as c:
        r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '"/predict"' in html and '"/metrics"' in html and "<canvas" in html
    assert '"kind": "image", "input": {"name": "input", "datatype": "UINT8"' in html
    # nothing from elsewhere: no remote src/href, no @import; the CSP pins the inline code
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", html)
    assert "@import" not in html and "http://" not in html and "https://" not in html
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    script = re.findall(r"<script>(.*?)</script>", html, re.S)
    style = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(script) == 1 and sha256_source(script[0]) in csp
    assert len(style) == 1 and sha256_source(style[0]) in csp


def test_the_page_is_open_behind_a_token_but_the_api_is_not() -> None:
    app = create_app(WordCountPredictor(), ServeConfig(name="t", token="s3cret"))
    with TestClient(app) as c:
        page = c.get("/")
        assert page.status_code == 200 and "<textarea" in page.text and 'id="token"' in page.text
        assert c.get("/metrics").status_code == 401
        assert c.post("/predict", content=b"hello").status_code == 401
        ok = c.post("/predict", content=b"hello there", headers={"Authorization": "Bearer s3cret"})
        assert ok.json()["label"] == "short"
        metrics = c.get("/metrics", headers={"Authorization": "Bearer s3cret"}).text
    assert 'dlhpc_requests_total{code="200",method="GET",path="/"} 1.0' in metrics


def test_a_model_name_cannot_break_out_of_the_page() -> None:
    app = create_app(WordCountPredictor(), ServeConfig(name="<b>x<\\script>"))
    with TestClient(app) as c:
        html = c.get("/").text
    assert "<b>" not in html and "&lt;b&gt;x" in html  # the title; the config block escapes "<"
    assert "\\u003cb>x" in html


# --------------------------------------------------------------------------- headless Chromium


def chromium_args(profile: Path) -> list[str]:
    assert CHROMIUM is not None
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}"]  # fmt: skip


@pytest.mark.slow
@needs_chromium
def test_chromium_shows_a_text_prediction_and_live_numbers(tmp_path: Path) -> None:
    predictor = WordCountPredictor()
    with live_server(create_app(predictor, ServeConfig(name="t"))) as url:
        out = subprocess.run(
            [*chromium_args(tmp_path), "--virtual-time-budget=4000", "--dump-dom",
             f"{url}/?text=a%20long%20text%20of%20words"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    dom = out.stdout
    assert '<div class="best">long</div>' in dom, out.stderr[-2000:]
    assert predictor.batches == [["a long text of words"]]
    requests = re.search(r'id="stat-requests">(\d+)<', dom)
    assert requests is not None and int(requests.group(1)) >= 1  # the page's own /predict
    assert re.search(r'id="stat-compute">[\d.]+ ms<', dom)


class DevTools:
    """Chromium driven over ``--remote-debugging-pipe`` (CDP as NUL-ended JSON on fds 3/4)."""

    def __init__(self, args: list[str]) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: its fd 3 reads our commands, fd 4 answers
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [*args, "--remote-debugging-pipe", "about:blank"], preexec_fn=wire,
            close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.session: str | None = None

    def call(self, method: str, timeout: float = 20, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self.session is not None:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    assert "error" not in reply, reply
                    return dict(reply["result"])
            chunk = os.read(self._from_chrome, 1 << 16)
            assert chunk, "chromium closed the pipe"
            self._buf += chunk
        raise TimeoutError(method)

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def js(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.js(expression):
                return value
            time.sleep(0.05)
        raise AssertionError(f"page never had {expression}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    tools = DevTools(chromium_args(tmp_path))
    try:
        yield tools
    finally:
        tools.close()


class RecordingEcho(EchoPredictor):
    """EchoPredictor that keeps the images it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []

    def predict(self, x_NCHW: np.ndarray) -> np.ndarray:
        self.seen.append(x_NCHW.copy())
        return super().predict(x_NCHW)


@pytest.mark.slow
@needs_chromium
def test_chromium_draws_a_digit_with_the_token_and_sees_the_prediction(
    browser: DevTools,
) -> None:
    predictor = RecordingEcho()
    with live_server(create_app(predictor, ServeConfig(name="m", token="s3cret"))) as url:
        browser.open(f"{url}/")
        browser.wait_for("document.readyState === 'complete'")
        assert browser.wait_for("document.getElementById('live-state').textContent") == (
            "(enter the token)"
        )
        browser.js("""{const t = document.getElementById('token'); t.value = 's3cret';
                       t.dispatchEvent(new Event('change'));}""")
        box = browser.js("JSON.stringify(document.getElementById('pad').getBoundingClientRect())")
        r = json.loads(box)
        x0, y0 = r["x"] + 0.15 * r["width"], r["y"] + 0.1 * r["height"]  # in the left pixels
        mouse = "Input.dispatchMouseEvent"
        browser.call(mouse, type="mousePressed", x=x0, y=y0, button="left", clickCount=1)
        for k in range(1, 21):  # a stroke down the left half: a "1"
            y = y0 + k * 0.04 * r["height"]
            browser.call(mouse, type="mouseMoved", x=x0, y=y, button="left", buttons=1)
        browser.call(mouse, type="mouseReleased", x=x0, y=y, button="left", clickCount=1)
        label = browser.wait_for("document.querySelector('#answer .best')?.textContent")
        latency = browser.js("document.getElementById('latency').textContent")
        requests = browser.wait_for(
            "(n => n > 0 && n)(+document.getElementById('stat-requests').textContent)"
        )
    assert len(predictor.seen) == 1 and predictor.seen[0].shape == (1, 1, 2, 2)
    pixels = predictor.seen[0][0, 0]
    assert pixels[0, 0] > 0 and pixels[0, 1] == 0  # white on black, where it was drawn
    assert label == str(pixels[0, 0])  # the page shows the server's answer
    assert "server" in latency and "ms" in latency
    assert requests == 1
