"""`oczss app`: the page's handler end to end through an HTTP client (Werkzeug's, in process), and the page in a
real browser (headless Chromium through Selenium and Debian's chromedriver)."""

import io
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from werkzeug.serving import make_server
from werkzeug.test import Client

import oczss
from oczss.pipeline.app import App

TINY = dict(weights="random", backbone="tiny", dino_model="tiny-p8", device="cpu")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def png(seed=0, size=(48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer,
                                                                                                              "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from oczss.model.cass import for_benchmark

    workdir = tmp_path_factory.mktemp("app")
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        seg = oczss.load("cass", config=for_benchmark("voc21", short_side=64, window=32, stride=16), **TINY,
                         cache_dir=workdir / "text")
    return App({"CASS (training-free)": seg}, workdir / "requests", max_pixels=60_000, max_upload_mb=1)


def post(client, classes, *images, method="CASS (training-free)"):
    data = {"classes": classes, "method": method, "images": [(io.BytesIO(b), n) for n, b in images]}
    response = client.post("/segment", data=data, content_type="multipart/form-data")
    return response.status_code, json.loads(response.get_data(as_text=True))


def test_the_handler_end_to_end(app, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "elsewhere"))  # a private temp folder: other processes
    (tmp_path / "elsewhere").mkdir()  # on this machine cannot make the check below fail
    client = Client(app)
    page = client.get("/").get_data(as_text=True)
    assert "CASS (training-free)" in page and '"random": true' in page and "RANDOM WEIGHTS" in page
    before = set(Path(tempfile.gettempdir()).iterdir())
    status, data = post(client, "cat, sofa|couch", ("a.png", png(0)), ("b.png", png(1, (40, 40))))
    assert status == 200 and data["random_weights"] and "RANDOM WEIGHTS" in data["notice"]
    assert [r["name"] for r in data["results"]] == ["a.png", "b.png"]
    overlay = client.get(data["results"][0]["overlay"])
    assert overlay.status_code == 200 and overlay.mimetype == "image/png"
    assert Image.open(io.BytesIO(overlay.get_data())).width >= 480
    labels = Image.open(io.BytesIO(client.get(data["results"][1]["labels"] + "?download").get_data()))
    assert labels.size == (40, 40) and json.loads(labels.text["oczss:classes"]) == ["cat", "sofa|couch"]
    written = [p for p in app.workdir.parent.rglob("*") if p.is_file()]
    assert written and all(p.is_relative_to(app.workdir.parent) for p in written)
    assert set(Path(tempfile.gettempdir()).iterdir()) == before  # nothing written anywhere else
    assert client.get("/files/../../etc/passwd").status_code == 404


@pytest.mark.parametrize("classes, images, status, message", [
    ("cat,,dog", [("a.png", png())], 400, "class 2 .* has an empty name"),
    ("cat", [], 400, "upload 1 to 8 images"),
    ("cat", [("big.png", png(0, (300, 201)))], 400, "big.png: 60,300 pixels; this app takes at most 60,000"),
    ("cat", [("notes.txt", b"hello")], 400, "notes.txt: not an image"),
    ("cat", [("huge.png", os.urandom(2 ** 20 + 10))], 413, "larger than 1 MB")])
def test_bad_requests_get_one_line_in_the_page(app, classes, images, status, message):
    code, data = post(Client(app), classes, *images)
    assert code == status and "Traceback" not in data["error"] and "\n" not in data["error"]
    assert __import__("re").search(message, data["error"]), data["error"]


def test_the_page_in_a_real_browser(app, demo_root, tmp_path):
    """Headless Chromium opens the page, uploads a photo, submits class names and shows the overlay."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = demo_root / "val2017" / "val_0002.jpg"  # a generated scene: sky, grass, shapes
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,1100", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(f"http://127.0.0.1:{server.server_port}/")
        assert "RANDOM WEIGHTS" in driver.find_element(By.ID, "notice").text
        driver.find_element(By.ID, "images").send_keys(str(photo))
        driver.find_element(By.ID, "classes").send_keys("sky, grass|lawn, cat")
        driver.find_element(By.ID, "submit").click()
        shown = WebDriverWait(driver, 120).until(lambda d: d.execute_script(
            "const i = document.querySelector('img.overlay'); const e = document.getElementById('error');"
            "return (i && i.complete && i.naturalWidth > 0 && i) || (!e.hidden && e.textContent);"))
        assert not isinstance(shown, str), shown  # the page's error message
        assert shown.get_attribute("src").endswith("0_overlay.png")
        assert "val_0002.jpg" in driver.find_element(By.ID, "results").text
        assert driver.find_element(By.ID, "error").get_attribute("hidden") is not None
        driver.save_screenshot(str(tmp_path / "app.png"))
        assert Image.open(tmp_path / "app.png").size[0] > 0
    finally:
        driver.quit()
        server.shutdown()
