"""The HTML report in a real browser: headless Chromium, driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` are installed by tests/browser/chromium.sh
when missing (root and apt-get needed). When they cannot be installed or started, the
tests are skipped and pytest's summary says why ("Chromium unavailable: ...");
``REGEXP_BROWSER=off`` skips them without trying. The page is opened from disk
(file://) in a 1366 x 768 window, as on a laptop; its screenshots are saved in the
test's tmp_path (``report.png``: the window; ``report_full.png``: the whole page).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from regexp.cli import main
from tests.runfolders import write_sweep

SCRIPT = Path(__file__).parent / "browser" / "chromium.sh"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1366,768"]  # fmt: skip
# errors thrown by the page's script, collected from before the page's first line runs
CATCH = ("window.__errors = []; window.addEventListener('error', "
         "e => window.__errors.push(String(e.message)));")  # fmt: skip
ARMS = [  # (overrides, accuracy reached, seeds), on a network of two hidden layers
    (["reg=none"], 0.80, 3),
    (["reg=l1_activity", "reg.lam=0.001"], 0.83, 3),
    (["reg=l1_activity", "reg.lam=0.01"], 0.86, 3),
    (["reg=l1_activity", "reg.lam=0.1"], 0.62, 3),
    (["reg=l2_activity", "reg.lam=0.001"], 0.81, 3),
    (["reg=l2_activity", "reg.lam=0.01"], 0.75, 2),  # two seeds far apart: a wide interval
    (["reg=dropout", "reg.dropout=0.2"], 0.84, 3),
    (["reg=dropout", "reg.dropout=0.5"], 0.78, 3),
]


def chromium() -> tuple[str, str]:
    """The browser's and the driver's paths, installing them if missing; else a skip
    with the reason: the script's last line ("chromium.sh: <what> failed: <why>")."""
    if os.environ.get("REGEXP_BROWSER") == "off":
        pytest.skip("browser tests turned off (REGEXP_BROWSER=off)")
    try:
        done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"Chromium unavailable: {type(e).__name__}: {e}")
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        pytest.skip(f"Chromium unavailable: {said[-1] if said else f'exit {done.returncode}'}")
    browser, driver = done.stdout.split()[-2:]
    return browser, driver


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report made by ``regexp report`` of a sweep of 8 arms (23 runs)."""
    arms = [([*overrides, "model.depth=2"], acc, seeds) for overrides, acc, seeds in ARMS]
    sweep = write_sweep(tmp_path_factory.mktemp("sweep"), arms)
    out = sweep / "report"
    assert main(["report", str(sweep), "--out", str(out), "--baseline", "reg.name=none"]) == 0
    return out


@pytest.fixture(scope="module")
def browser(report):
    """Chromium, started once for the module's tests; stopped however they end."""
    browser, driver_path = chromium()
    selenium = pytest.importorskip("selenium", reason="selenium is in the dev extra")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="regexp-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:  # the driver at its Debian path: Selenium Manager downloads nothing
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except selenium.common.exceptions.WebDriverException as e:
        pytest.skip(f"Chromium unavailable: could not start: {str(e.msg).splitlines()[0]}")
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CATCH})
        yield driver
    finally:
        driver.quit()
        subprocess.run(["rm", "-rf", profile], check=False)


@pytest.fixture
def page(browser, report):
    """The shared Chromium showing report.html as just opened: no sort, filter or other
    page left over from an earlier test (loading it again takes a few milliseconds)."""
    browser.get((report / "report.html").as_uri())
    return browser


def _rows(driver, table: int = 0) -> list[list[str]]:
    """The visible rows' cell texts of the page's ``table``-th table."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('table')[arguments[0]].tBodies[0].rows)"
        ".filter(r => !r.hidden).map(r => Array.from(r.cells).map(c => c.textContent))",
        table,
    )


def _headers(driver, table: int = 0) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('table')[arguments[0]].tHead.rows[0]"
        ".cells).map(c => c.textContent)",
        table,
    )


def _click_header(driver, name: str, table: int = 0) -> None:
    from selenium.webdriver.common.by import By

    heads = driver.find_elements(By.TAG_NAME, "table")[table].find_elements(By.TAG_NAME, "th")
    next(h for h in heads if h.text.rstrip(" ▲▼") == name).click()


def test_the_page_loads_without_errors_and_fits_a_laptop_screen(page, tmp_path):
    page.save_screenshot(str(tmp_path / "report.png"))
    _full_screenshot(page, tmp_path / "report_full.png")
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert page.execute_script("return window.__errors") == []
    severe = [e["message"] for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    width = page.execute_script("return window.innerWidth")
    assert width == 1366
    # nothing wider than the window: wide tables scroll inside their own box
    assert page.execute_script("return document.documentElement.scrollWidth") <= width
    boxes = page.execute_script(
        "return Array.from(document.querySelectorAll('div.scroll'))"
        ".map(b => [b.getBoundingClientRect().right, b.scrollWidth, b.clientWidth])"
    )
    assert boxes and all(right <= width for right, _, _ in boxes)
    images = page.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, "
        "i.getBoundingClientRect().right])"
    )
    assert len(images) >= 3
    assert all(done and natural > 0 and right <= width for done, natural, right in images)
    # on a narrower screen the tables are wider than the window and scroll in their boxes
    page.set_window_size(800, 768)
    try:
        narrow = page.execute_script("return window.innerWidth")
        assert page.execute_script("return document.documentElement.scrollWidth") <= narrow
        boxes = page.execute_script(
            "return Array.from(document.querySelectorAll('div.scroll'))"
            ".map(b => [b.scrollWidth, b.clientWidth])"
        )
        assert any(inner > shown for inner, shown in boxes)
        images = page.execute_script(
            "return Array.from(document.images).map(i => i.getBoundingClientRect().right)"
        )
        assert max(images) <= narrow  # scaled to the width
    finally:
        page.set_window_size(1366, 768)


def _full_screenshot(driver, path: Path) -> None:
    import base64

    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"captureBeyondViewport": True, "format": "png"}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def _numbers(text: str) -> tuple[list[float], float]:
    """The three numbers of a CI cell, and half a unit in its last decimal."""
    match = re.fullmatch(r"(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", text)
    assert match, f"not a CI cell: {text!r}"
    decimals = len(match.group(1).partition(".")[2])
    return [float(x) for x in match.groups()], 0.5 * 10.0**-decimals + 1e-12


def test_ci_cells_show_report_csv_numbers(page, report):
    table = pd.read_csv(report / "report.csv").set_index("group")
    heads = _headers(page)
    column = heads.index("test_accuracy")
    assert "test_accuracy_ci_low" not in heads  # one cell, not three columns
    for row in _rows(page):
        (mean, low, high), tolerance = _numbers(row[column])
        expected = table.loc[row[0], ["test_accuracy", "test_accuracy_ci_low",
                                      "test_accuracy_ci_high"]]  # fmt: skip
        assert [mean, low, high] == pytest.approx(list(expected), abs=tolerance)


def test_clicking_a_header_sorts_the_rows(page, report):
    table = pd.read_csv(report / "report.csv")
    _click_header(page, "test_accuracy")
    shown = [row[0] for row in _rows(page)]
    assert shown == list(table.sort_values("test_accuracy", kind="stable")["group"])
    _click_header(page, "test_accuracy")  # again: the other way
    shown = [row[0] for row in _rows(page)]
    expected = table.sort_values("test_accuracy", ascending=False, kind="stable")["group"]
    assert shown == list(expected)
    _click_header(page, "group")  # from that order: reg.lam=0.001, 0.01, 0.1 in turn
    assert [row[0] for row in _rows(page)] == sorted(table["group"])


def test_the_filter_box_hides_rows_that_do_not_match(page, report):
    from selenium.webdriver.common.by import By

    table = pd.read_csv(report / "report.csv")
    box = page.find_elements(By.CSS_SELECTOR, "input.filter")[0]
    box.send_keys("l2_activity")
    shown = {row[0] for row in _rows(page)}
    expected = {g for g in table["group"] if "l2_activity" in g}
    assert shown == expected and len(expected) == 2
    count = page.find_elements(By.CSS_SELECTOR, "span.shown")[0].text
    assert count == f"2 of {len(table)} rows"
    box.clear()
    box.send_keys("activity lam=0.1")  # every word; key=value in the column reg.lam
    assert [row[0] for row in _rows(page)] == ["l1_activity reg.lam=0.1"]
    box.clear()
    box.send_keys("activity reg.lam=0.1")
    assert [row[0] for row in _rows(page)] == ["l1_activity reg.lam=0.1"]
    box.clear()
    box.send_keys("DROP")  # the start of a word, case aside
    assert [row[0] for row in _rows(page)] == [g for g in table["group"] if "dropout" in g]
    box.clear()
    box.send_keys("l1 3")  # a result's number (n = 3) is never searched
    assert _rows(page) == []
    box.clear()
    # words, not digits inside numbers: 0.01 is not in 0.001, nor in a CI cell's -0.010
    box.send_keys("l1 0.01")
    assert [row[0] for row in _rows(page)] == ["l1_activity reg.lam=0.01"]
    box.clear()
    box.send_keys("l1 1e-2")  # a number matches as a number
    assert [row[0] for row in _rows(page)] == ["l1_activity reg.lam=0.01"]
    box.clear()
    box.send_keys(" ")  # clear() fires no input event; a blank filter shows every row
    assert len(_rows(page)) == len(table)


def test_ci_triples_are_one_cell_in_markdown_and_html(tmp_path):
    """No browser needed: the page's and report.md's text of a small table."""
    from regexp.report import Document, markdown_table

    frame = pd.DataFrame({
        "group": ["l1", "none"], "n": [3, 1],
        "test_accuracy": [0.83612, 0.8], "test_accuracy_ci_low": [0.81634, float("nan")],
        "test_accuracy_ci_high": [0.85521, float("nan")],
        "test_accuracy_diff": [0.0312, None], "test_accuracy_diff_ci_low": [0.0101, None],
        "test_accuracy_diff_ci_high": [0.0523, None], "test_accuracy_verdict": ["better", None],
    })  # fmt: skip
    lines = markdown_table(frame).splitlines()
    assert lines[0] == "| group | n | test_accuracy | test_accuracy_diff | test_accuracy_verdict |"
    assert lines[2] == "| l1 | 3 | 0.836 [0.816, 0.855] | 0.031 [0.010, 0.052] | better |"
    assert lines[3] == "| none | 1 | 0.8 | - | - |"  # one run: no interval
    doc = Document("t", tmp_path)
    doc.table(frame, title="Groups")
    doc.write()
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Groups</h2>" in page
    assert '<td data-sort="0.83612" class="ci">0.836 [0.816, 0.855]</td>' in page
    assert '<td class="verdict-better">better</td>' in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched
    assert list(frame.columns)[2:5] == ["test_accuracy", "test_accuracy_ci_low",
                                        "test_accuracy_ci_high"]  # fmt: skip


def test_chromium_that_cannot_be_installed_is_a_skip_with_the_reason(tmp_path, monkeypatch):
    failing = tmp_path / "chromium.sh"
    said = "chromium.sh: apt-get install chromium chromium-driver failed: E: Unable to locate"
    failing.write_text(f"#!/bin/sh\necho 'Reading package lists' >&2\necho '{said}' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr("tests.test_browser.SCRIPT", failing)
    monkeypatch.delenv("REGEXP_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"^Chromium unavailable: {said}$"):
        chromium()
    monkeypatch.setattr("tests.test_browser.SCRIPT", tmp_path / "missing.sh")
    with pytest.raises(pytest.skip.Exception, match="^Chromium unavailable: FileNotFoundError"):
        chromium()


def test_verdicts_are_visible_words_at_1366_and_headers_sort_by_keyboard(page, report):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    heads = _headers(page)
    verdicts = [i for i, h in enumerate(heads) if h.rstrip(" ▲▼").endswith("_verdict")]
    assert verdicts == [1, 2]  # right after the label on the page (report.csv keeps its order)
    edges = page.execute_script(  # the label and every verdict of every row, on load
        "var rows = document.querySelectorAll('table')[0].tBodies[0].rows;"
        "return Array.from(rows).map(r => arguments[0].map(i => {"
        "  var b = r.cells[i].getBoundingClientRect(); return [b.left, b.right]; }))",
        [0, *verdicts],
    )
    assert len(edges) == len(pd.read_csv(report / "report.csv"))
    assert all(0 <= left and right <= 1366 for row in edges for left, right in row)
    assert "*" not in page.find_element(By.TAG_NAME, "body").text  # cells and paragraphs
    texts = {c for row in _rows(page) for c in (row[1], row[2])}
    assert texts and not any("*" in t for t in texts)
    assert texts <= {"-", "better", "worse", "equivalent", "inconclusive", "too few seeds"}
    classes = page.execute_script(
        "return Array.from(document.querySelectorAll('table')[0].tBodies[0].rows)"
        ".map(r => [r.cells[1].textContent, r.cells[1].className])"
    )
    assert all(cls == f"verdict-{'inconclusive' if t == 'too few seeds' else t}"
               for t, cls in classes if t != "-")  # fmt: skip
    # keyboard: Tab from the header before test_accuracy reaches its button, Enter sorts
    from selenium.webdriver.common.action_chains import ActionChains

    table = pd.read_csv(report / "report.csv")
    buttons = page.find_elements(By.CSS_SELECTOR, "table")[0].find_elements(
        By.CSS_SELECTOR, "th button")  # fmt: skip
    at = [b.text for b in buttons].index("test_accuracy")
    page.execute_script("arguments[0].focus()", buttons[at - 1])
    ActionChains(page).send_keys(Keys.TAB).perform()
    assert page.execute_script("return document.activeElement.textContent") == "test_accuracy"
    before = [row[0] for row in _rows(page)]
    ActionChains(page).send_keys(Keys.ENTER).perform()
    th = buttons[at].find_element(By.XPATH, "..")
    assert th.get_attribute("aria-sort") == "ascending"
    ascending = list(table.sort_values("test_accuracy", kind="stable")["group"])
    assert [row[0] for row in _rows(page)] == ascending != before
    ActionChains(page).send_keys(Keys.SPACE).perform()
    assert th.get_attribute("aria-sort") == "descending"
    assert [row[0] for row in _rows(page)] == ascending[::-1]


def test_run_rows_link_to_their_folders_and_sort_naturally(page, report):
    from selenium.webdriver.common.by import By

    runs_table = next(i for i in range(4) if _headers(page, i)[0].rstrip(" ▲▼") == "run")
    hrefs = page.execute_script(
        "return Array.from(document.querySelectorAll('table')[arguments[0]].tBodies[0].rows)"
        ".map(r => Array.from(r.cells[0].querySelectorAll('a')).map(a => a.href))",
        runs_table,
    )
    assert hrefs and all(len(links) == 4 for links in hrefs)
    from urllib.parse import unquote, urlparse

    for folder, *files in hrefs:
        path = Path(unquote(urlparse(folder).path))
        assert path.is_dir() and (path / "metrics.json").is_file()
        assert all(Path(unquote(urlparse(f).path)).is_file() for f in files)
    # the first run's link, resolved against the page, is that run's own folder
    name, href = page.execute_script(
        "var a = document.querySelectorAll('table')[arguments[0]].tBodies[0].rows[0]"
        ".cells[0].querySelector('a');"
        "return [a.textContent, new URL(a.getAttribute('href'), location).pathname]",
        runs_table,
    )
    sweep = report.parent
    assert unquote(href).rstrip("/") == str((sweep / name).resolve())
    assert f"[{name}](../{name}/)" in (report / "report.md").read_text()  # and in Markdown
    _click_header(page, "run", runs_table)
    names = [row[0].split()[0] for row in _rows(page, runs_table)]
    numbers = [int(n.split("_")[0]) for n in names]
    assert numbers == sorted(numbers)  # 0, 1, 2, ..., 10, 11: not 0, 1, 10, 11, 2
    # following the link opens the folder: Chromium lists its files
    page.find_element(By.LINK_TEXT, names[0]).click()
    assert unquote(urlparse(page.current_url).path).rstrip("/") == str(
        (sweep / names[0]).resolve())  # fmt: skip
    assert "metrics.json" in page.find_element(By.TAG_NAME, "body").text


def test_verdicts_are_coloured_words_without_asterisks(browser, tmp_path):
    """Every verdict of the vocabulary, on a page of its own: its class and its colour."""
    from selenium.webdriver.common.by import By

    from regexp.report import Document

    said = {"better": "verdict-better", "worse": "verdict-worse",
            "equivalent": "verdict-equivalent", "inconclusive": "verdict-inconclusive",
            "too few seeds": "verdict-inconclusive", "better, replicated": "verdict-better",
            "equivalent, replicated": "verdict-equivalent",
            "better, not replicated": "verdict-unreplicated",
            "worse, not replicated": "verdict-unreplicated"}  # fmt: skip
    frame = pd.DataFrame({"group": [f"g{i}" for i in range(len(said))],
                          "test_accuracy_verdict": list(said)})  # fmt: skip
    doc = Document("verdicts", tmp_path)
    doc.text("better: the adjusted p < 0.05 and the difference on the good side.")
    doc.table(frame)
    doc.write()
    browser.get((tmp_path / "report.html").as_uri())
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('tbody tr')).map(r => {"
        "  var c = r.cells[1], s = getComputedStyle(c);"
        "  return [c.textContent, c.className, s.backgroundColor, s.color,"
        "          getComputedStyle(c.firstElementChild || c).textDecorationLine]; })"
    )
    assert {text: cls for text, cls, *_ in shown} == said
    rgb = {text: [int(x) for x in re.findall(r"\d+", back)[:3]] for text, _, back, _, _ in shown}
    r, g, b = rgb["better"]
    assert g > r + 20 and g > b + 20  # green
    r, g, b = rgb["worse"]
    assert r > g + 20 and r > b + 20  # red
    r, g, b = rgb["equivalent"]
    assert b > r + 20  # blue
    r, g, b = rgb["better, not replicated"]
    assert r > b + 20 and rgb["better, not replicated"] != rgb["better"]  # amber
    colour = {text: c for text, _, _, c, _ in shown}
    assert colour["inconclusive"] == colour["too few seeds"] != colour["better"]  # grey
    struck = {text: line for text, *_, line in shown}
    assert struck["better, not replicated"] == "line-through" != struck["better"]
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "*" not in page and "*" not in (tmp_path / "report.md").read_text()
