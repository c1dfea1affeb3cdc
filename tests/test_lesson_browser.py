"""A lesson, walked end to end in a real browser (headless system Chromium, ``streamlit run app.py``).

A teacher prepares a lesson the way the pages are meant to be used, and every step is opened by
a link, as it would be shared with students:

1. Home: the default session trains and shows its result.
2. A schedule comparison over seeds, kept small through the Trade-offs sweep's URL parameters
   (2 schedules × 2 seeds × dense and 90 %, 2 epochs), then the 90 % runs overlaid on the
   Schedules page by a link that names them: mean lines with ± one standard deviation bands,
   n stated, verdicts in words. A slider moved in the browser lands in the address bar, and that
   address opened in a fresh browser context (a student's browser) shows the same value.
3. The mask film (Mask evolution) of the one-cycle and the iterative run, opened at a snapshot
   by the link; the same link in a fresh context shows the same runs, layer and snapshot.
4. The trade-off curve (Trade-offs) filtered by the link: curves over the fraction of weights
   kept with n stated, and the dense baseline.
5. The Speed lab, measured with the link's batch sizes and budget.

Each step checks the charts (plotly elements by their keys, bands by their filled paths, chart
text), the captions the lesson relies on and that no exception is shown. Server and browser
fixtures come from test_browser.
"""
from __future__ import annotations

import re
import time
import urllib.parse

import pytest

from pruning.store import RunStore
from test_browser import CHROMIUM, browser, run_default_session, server  # noqa: F401 (fixtures)

#: the lesson's schedule comparison: small enough for a 2-core machine
SCHEDULES = ("one_cycle", "iterative")
SEEDS = (0, 1)
SWEEP = {"sweep.schedules": ",".join(SCHEDULES), "sweep.seeds": ",".join(map(str, SEEDS)),
         "sweep.sparsities": "0, 0.9", "sweep.epochs": "2", "sweep.latency": "false"}
SWEEP_TIMEOUT_S = 240


def link(url: str, path: str, params: dict[str, str]) -> str:
    return f"{url}/{path}?{urllib.parse.urlencode(params)}"


def params_of(address: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(address).query,
                                       keep_blank_values=True))


def open_page(browser, address: str):  # noqa: F811 (the fixture's value)
    """A fresh browser context (no cookies, no session: a student's browser) on ``address``."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(address, wait_until="domcontentloaded")
    page.locator("[data-testid='stMain']").wait_for()
    return page


def settled(page) -> None:
    """Wait until the script run is over (Streamlit shows a status widget while running)."""
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=120_000)


def healthy(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    assert "Traceback" not in page.content()


def chart(page, key: str):
    """The plotly chart drawn with Streamlit key ``key``, once it has rendered."""
    element = page.locator(f".st-key-{key} .js-plotly-plot").first
    element.wait_for()
    return element


def slider(page, key: str):
    """The (first) thumb of the slider with Streamlit key ``key``: a range input."""
    return page.locator(f".st-key-{key} input[type='range']").first


def shows(page, key: str, text: str) -> None:
    """The select box with Streamlit key ``key`` comes to show ``text`` (a run id's tail)."""
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(page.locator(f".st-key-{key} input").first).to_have_value(re.compile(re.escape(text)))


def caption_with(page, text: str) -> str:
    element = page.locator("[data-testid='stCaptionContainer']", has_text=text).first
    element.wait_for()
    return element.inner_text()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium found (apt-get install chromium)")
def test_a_lesson_from_default_session_to_speed_lab(server, browser):  # noqa: F811
    url, home = server
    started = time.perf_counter()

    # 1. the default session, from Home
    run_default_session(browser, url, tabs=1)
    print(f"default session: {time.perf_counter() - started:.0f} s")
    store = RunStore(home)
    (default_run,) = store.list_runs()

    # 2. a schedule comparison over seeds: a sweep set up entirely by its link
    page = open_page(browser, link(url, "Trade-offs", SWEEP))
    settled(page)
    healthy(page)
    assert params_of(page.url).items() >= SWEEP.items()  # the link stays as it was
    caption_with(page, f"{len(SCHEDULES) * len(SEEDS) * 2} run(s) of 2 epoch(s) each")
    page.get_by_role("button", name="Start sweep").click()
    deadline = time.time() + SWEEP_TIMEOUT_S
    while len([r for r in store.list_runs() if r.status == "done"]) < 1 + len(SCHEDULES) * len(SEEDS) * 2:
        assert time.time() < deadline, "the sweep did not finish"
        assert not [r for r in store.list_runs() if r.status == "failed"]
        time.sleep(1)
    print(f"+ schedule comparison trained: {time.perf_counter() - started:.0f} s")
    swept = [r for r in store.list_runs() if r.id != default_run.id]
    compared = [r for r in swept if r.config.sparsity == 0.9]
    assert sorted((r.config.schedule, r.config.seed) for r in compared) == sorted(
        (s, seed) for s in SCHEDULES for seed in SEEDS)
    page.close()

    overlay = {"runs": ",".join(r.id for r in compared), "schedules": ",".join(SCHEDULES)}
    page = open_page(browser, link(url, "Schedules", overlay))
    settled(page)
    healthy(page)
    chart(page, "sch-curves")
    curves = chart(page, "sch-overlay-curves")
    assert curves.locator("path.js-fill").count() >= len(SCHEDULES)  # a spread band per schedule
    caption_with(page, "Target sparsity each schedule asks for over training")
    text = caption_with(page, "the band ± one standard deviation")
    assert f"n = {len(SEEDS)} seeds per line" in text
    caption_with(page, "Final test accuracy of each schedule over its seeds")
    caption_with(page, "Differences between schedules in words")
    query = params_of(page.url)
    assert query["runs"] == overlay["runs"] and query["schedules"] == overlay["schedules"]
    # a choice made in the browser lands in the address bar ...
    thumb = slider(page, "sch-final")
    thumb.focus()
    thumb.press("ArrowLeft")  # from the default 0.98
    settled(page)
    page.wait_for_function("() => location.search.includes('final=0.97')")
    shared = page.url
    page.close()
    # ... and that address restores the view in a student's fresh browser
    student = open_page(browser, shared)
    settled(student)
    healthy(student)
    assert float(slider(student, "sch-final").input_value()) == pytest.approx(0.97)
    assert params_of(student.url)["runs"] == overlay["runs"]
    chart(student, "sch-overlay-curves")
    student.close()

    # 3. the mask film: one-cycle next to iterative, same seed, opened at a snapshot
    by = {(r.config.schedule, r.config.seed): r for r in compared}
    film = {"left": by["one_cycle", 0].id, "right": by["iterative", 0].id, "frame": "1"}
    page = open_page(browser, link(url, "Mask_evolution", film))
    settled(page)
    healthy(page)
    chart(page, "masks-film")
    chart(page, "masks-churn")
    caption_with(page, "What am I looking at")
    assert slider(page, "masks-frame").input_value() == "1"
    query = params_of(page.url)
    assert query.items() >= film.items() and query.get("layer")
    page.close()
    student = open_page(browser, link(url, "Mask_evolution", query))
    settled(student)
    healthy(student)
    for key, run_id in (("masks-a", film["left"]), ("masks-b", film["right"])):
        shows(student, key, run_id[-6:])
    assert slider(student, "masks-frame").input_value() == "1"
    student.close()

    # 4. the trade-off curve, filtered to the lesson's schedules by the link
    page = open_page(browser, link(url, "Trade-offs", {"schedule": ",".join(SCHEDULES)}))
    settled(page)
    healthy(page)
    curve = chart(page, "to-density")
    drawn = curve.text_content()
    assert "fraction of weights kept" in drawn and "dense baseline (" in drawn
    assert f"(n = {len(SEEDS)} seeds)" in drawn  # each sweep curve states its seeds
    caption_with(page, "Each point is one setting, averaged over its seeds")
    assert params_of(page.url)["schedule"] == ",".join(SCHEDULES)
    page.close()

    # 5. the Speed lab, measured with the link's settings
    lab = {"run": default_run.id, "batches": "1,8", "seconds": "3"}
    page = open_page(browser, link(url, "Speed_lab", lab))
    settled(page)
    healthy(page)
    shows(page, "speedlab-run", default_run.id[-6:])
    page.get_by_role("button", name="Measure the four forms on this machine").click()
    chart(page, "speedlab-latency")
    chart(page, "speedlab-speedup")
    caption_with(page, "Time per image of each form")
    assert re.search(r"Measured on \*?\*?cpu", page.locator("[data-testid='stMain']").inner_text())
    assert params_of(page.url).items() >= lab.items()
    healthy(page)
    page.close()
    print(f"lesson walked in {time.perf_counter() - started:.0f} s")
