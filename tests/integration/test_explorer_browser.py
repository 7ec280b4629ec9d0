"""The explorer page in a real browser (Debian's headless Chromium through chromedriver and
selenium) against `graphrag-streams serve` on the demo graph. Screenshots are kept under
build/test-artifacts/explorer/ (or $GRAPHRAG_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.demo_api import DemoApi
from tests.support import ROOT

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("GRAPHRAG_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GRAPHRAG_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("GRAPHRAG_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "explorer"
# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# kind of closed network refuses.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.fail(f"{path} is missing: the browser tests need Debian's chromium and chromium-driver "
                        "(scripts/ensure-browser.sh installs them; `make test` runs it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: WebDriver, condition: Any, what: str, timeout: float = 20) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: condition(d), message=f"the page did not show {what} within {timeout:.0f}s")


def _shot(driver: WebDriver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def _js_errors(driver: WebDriver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "favicon" not in e["message"]]


def _links(box: WebElement) -> list[str]:
    return [a.get_attribute("href") or "" for a in box.find_elements(By.CSS_SELECTOR, "a.moment")]


def test_search_draw_and_click_a_node_for_its_evidence(demo_api: DemoApi, browser: WebDriver) -> None:
    entity = demo_api.most_connected()
    browser.get(demo_api.url + "/")
    box = browser.find_element(By.ID, "search")
    box.send_keys(entity["name"])
    results = browser.find_element(By.ID, "results")
    # The list the typed search drew, not the one of the empty search at page load.
    _wait(browser, lambda d: results.get_attribute("data-query") == entity["name"].strip(), "the search's results")
    result = _wait(browser, lambda d: next((b for b in d.find_elements(By.CSS_SELECTOR, "#results button")
                                            if b.get_attribute("data-id") == entity["_id"]), None),
                   f"{entity['name']!r} among the search results")
    result.click()

    hood = demo_api.get(f"/api/entities/{entity['_id']}/neighbourhood").json()
    drawn = _wait(browser, lambda d: d.execute_script(
        "const g = window.explorerGraph; return g && g.nodes().length ? g.nodes().map(n => n.id()) : null"),
        "the neighbourhood graph")
    assert sorted(drawn) == sorted(n["id"] for n in hood["nodes"]) and len(drawn) > 1
    assert browser.execute_script("return window.explorerGraph.edges().length") == len(hood["edges"])
    canvas = browser.find_elements(By.CSS_SELECTOR, "#graph canvas")
    assert canvas and canvas[0].size["width"] > 300
    detail = browser.find_element(By.ID, "detail")
    _wait(browser, lambda d: detail.get_attribute("data-entity") == entity["_id"], "the entity's detail")
    _shot(browser, "1-entity-neighbourhood")

    # A real mouse click on another node, where cytoscape drew it: the one farthest from any
    # other node, so that the click cannot land on a neighbour.
    other_id, x, y = browser.execute_script("""
        const g = window.explorerGraph; g.fit();
        const pos = g.nodes().map(n => [n.id(), n.renderedPosition()]);
        let best = null;
        for (const [id, p] of pos) {
          if (id === arguments[0]) continue;
          const gap = Math.min(...pos.filter(([o]) => o !== id).map(([, q]) => Math.hypot(p.x - q.x, p.y - q.y)));
          if (!best || gap > best[0]) best = [gap, id, p.x, p.y];
        }
        return best.slice(1);""", entity["_id"])
    other = next(n for n in hood["nodes"] if n["id"] == other_id)
    graph = browser.find_element(By.ID, "graph")
    ActionChains(browser).move_to_element_with_offset(graph, int(x - graph.size["width"] / 2),
                                                      int(y - graph.size["height"] / 2)).click().perform()
    _wait(browser, lambda d: detail.get_attribute("data-entity") == other["id"], f"{other['name']!r}'s evidence")
    expected = demo_api.get(f"/api/entities/{other['id']}").json()
    links = _wait(browser, lambda d: _links(detail) or None, "evidence links")
    assert links == [ev["moment"]["url"] for ev in expected["evidence"]]
    assert all("?t=" in link for link in links)
    assert browser.find_element(By.ID, "evidence").find_elements(By.TAG_NAME, "li")
    _shot(browser, "2-node-evidence")
    assert not _js_errors(browser)


def test_an_asked_question_shows_a_cited_answer(demo_api: DemoApi, browser: WebDriver) -> None:
    entity = demo_api.most_connected()
    question = f"What about {entity['name']}?"
    browser.get(demo_api.url + "/#/ask")
    field = _wait(browser, lambda d: d.find_element(By.ID, "question") if d.find_element(By.ID, "question")
                  .is_displayed() else None, "the ask box")
    field.send_keys(question)
    browser.find_element(By.ID, "ask-button").click()
    answer = browser.find_element(By.ID, "answer")
    cited = _wait(browser, lambda d: _links(answer) or None, "the answer's citations")
    expected = demo_api.get("/api/query", q=question).json()
    assert cited == [c["url"] for c in expected["citations"]] and all("?t=" in c for c in cited)
    inline = [a.get_attribute("href") for a in answer.find_elements(By.CSS_SELECTOR, ".answer-text a")]
    assert inline and set(inline) <= set(cited)
    _shot(browser, "3-answer")
    assert not _js_errors(browser)


def test_communities_and_pipeline_views(demo_api: DemoApi, browser: WebDriver) -> None:
    listed = demo_api.get("/api/communities", limit=200).json()
    browser.get(demo_api.url + "/#/communities")
    buttons = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#community-list button") or None,
                    "the community list")
    assert [b.get_attribute("data-id") for b in buttons] == [c["id"] for c in listed]
    buttons[0].click()
    report = browser.find_element(By.ID, "community-detail")
    _wait(browser, lambda d: listed[0]["title"] in report.text, "the largest community's report")
    _shot(browser, "4-community")

    browser.get(demo_api.url + "/#/pipeline")
    rows = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#videos-table tbody tr") or None,
                 "the videos table")
    assert sorted(r.find_elements(By.TAG_NAME, "td")[0].text for r in rows) == demo_api.video_ids
    assert all(r.find_elements(By.TAG_NAME, "td")[2].text == "done" for r in rows)
    breakdown = browser.find_element(By.ID, "dlq-breakdown").text
    assert "dead letters by stage" in breakdown, breakdown
    _shot(browser, "5-pipeline")
    assert not _js_errors(browser)


def test_the_api_docs_render_without_a_cdn(demo_api: DemoApi, browser: WebDriver) -> None:
    browser.get(demo_api.url + "/docs")
    paths = _wait(browser, lambda d: [e.get_attribute("data-path") for e in
                                      d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")] or None,
                  "the Swagger UI's operations")
    assert {"/api/query", "/api/entities/{entity_id}", "/api/videos"} <= set(paths)
    _shot(browser, "6-api-docs")
    assert not _js_errors(browser)
