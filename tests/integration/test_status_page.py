"""The status page (issue 9, item 6) in a real headless browser: Debian's chromium driven by
selenium through chromedriver (both installed by the test setup when missing) against a
running gateway: the modem and a message just sent appear, the simulated-MO form makes an
inbound message appear without a reload, and the page fits a phone's width. A screenshot is
left in the test's temporary folder. Also the routes' own rules, without a browser."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest
import trio
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait
from support.gateway import start_behind_proxy
from support.tools import require_tool

from edgegw.config import Config
from edgegw.gateway import Gateway

AUTH = ("demo", "demo")
PHONE = (390, 844)  # CSS pixels of a common phone
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_tools() -> tuple[str, str]:
    return require_tool("chromium", "chromium"), require_tool("chromedriver", "chromium-driver")


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


def open_browser(tools: tuple[str, str], profile: Path) -> WebDriver:
    chromium, chromedriver = tools
    options = Options()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))


async def test_the_page_shows_the_modem_a_sent_message_and_a_simulated_mo(
    gateway: Gateway, tmp_path: Path, browser_tools: tuple[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        sent = await client.post(
            "/gw/rs/sendMessages",
            json={
                "serviceId": 1000,
                "username": "demo",
                "password": "demo",
                "message": [{"recipient": "+4741000000", "content": "seen in a browser"}],
            },
            headers={"Accept": "application/json"},
        )
    message_id = sent.json()["messageStatus"][0]["messageId"]
    page = url(gateway).replace("http://", "http://demo:demo@") + "/status"
    screenshot = tmp_path / "status.png"

    def row_text(browser: WebDriver, selector: str, containing: str = "") -> str | None:
        """The text of the first row matching, read at once: the page replaces its rows on
        every refresh, so an element found earlier may be gone."""
        script = (
            "const rows = [...document.querySelectorAll(arguments[0])];"
            "const row = rows.find((r) => r.innerText.includes(arguments[1]));"
            "return row ? row.innerText : null;"
        )
        text: str | None = browser.execute_script(script, selector, containing)
        return text

    def browse() -> dict[str, object]:
        browser = open_browser(browser_tools, tmp_path / "profile")
        try:
            browser.set_window_size(*PHONE)
            browser.get(page)
            wait = WebDriverWait(browser, 30, poll_frequency=0.1)
            modem = wait.until(lambda b: row_text(b, 'tr[data-modem="sim0"]'))
            message = wait.until(lambda b: row_text(b, f'#messages tr[data-id="{message_id}"]'))
            form = browser.find_element(By.ID, "simulate")
            wait.until(lambda b: form.is_displayed())
            form.find_element(By.NAME, "from").send_keys("+4799999999")
            form.find_element(By.NAME, "text").send_keys("hello from a phone")
            form.find_element(By.TAG_NAME, "button").click()
            inbound = wait.until(lambda b: row_text(b, "#inbound tbody tr", "hello from a phone"))
            result = {
                "modem": modem,
                "message": message,
                "inbound": inbound,
                "overflow": browser.execute_script(
                    "return document.documentElement.scrollWidth - window.innerWidth"
                ),
                "title": browser.title,
            }
            browser.save_screenshot(str(screenshot))
            return result
        finally:
            browser.quit()

    seen = await trio.to_thread.run_sync(browse)
    assert seen["title"] == "edgegw status"
    assert str(seen["modem"]).split("\t")[:5] == [
        "sim0",
        "ready",
        "Simulated Network home",
        "-73 dBm",
        "READY",
    ]
    assert str(seen["message"]).split("\t")[:3] == [message_id, "1000", "+4741000000"]
    assert str(seen["inbound"]).split("\t")[1:3] == ["+4799999999", "hello from a phone"]
    assert int(str(seen["overflow"])) <= 0  # nothing wider than the phone: tables scroll inside
    assert screenshot.stat().st_size > 1000


async def test_the_routes_ask_for_credentials_and_check_their_forms(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        root = await client.get("/")
        assert (root.status_code, root.headers["location"]) == (302, "/status")
        assert (await client.get("/status")).status_code == 401
        assert (await client.get("/status/data", auth=("demo", "nope"))).status_code == 401
        script = await client.get("/status/assets/status.js")  # no data in it: no credentials
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/status/assets/nothing.js")).status_code == 404
        page = await client.get("/status", auth=AUTH)
        assert page.status_code == 200
        assert "https://" not in page.text  # everything is served by edgegw itself
        refused = await client.post("/status/send", auth=AUTH, data={"to": "+47", "text": ""})
        assert refused.status_code == 400
        wrong = await client.post("/status/send", auth=AUTH, data={"to": "hello", "text": "x"})
        assert wrong.status_code == 422
        sent = await client.post(
            "/status/send", auth=AUTH, data={"to": "+4741000000", "text": "from the page"}
        )
        assert sent.status_code == 200
        data = (await client.get("/status/data", auth=AUTH)).json()
        assert data["messages"][0]["id"] == sent.json()["messageId"]
        assert data["simulated"] == ["sim0"]
        nowhere = await client.post(
            "/status/simulate-mo", auth=AUTH, data={"from": "+4799", "text": "x", "modem": "no"}
        )
        assert nowhere.status_code == 422
        detail = "no is not a simulated modem of this gateway (its simulated modems: sim0)"
        assert nowhere.json()["detail"] == detail
        assert (await client.get("/status/send", auth=AUTH)).status_code == 405


async def test_an_sms_cannot_arrive_where_no_modem_is_simulated(
    config: Config, nursery: trio.Nursery
) -> None:
    gateway = Gateway(msgspec.structs.replace(config, modems=[]))
    await nursery.start(gateway.run)
    async with httpx.AsyncClient(base_url=url(gateway), auth=AUTH) as client:
        for modem in ({}, {"modem": "sim0"}):
            arrived = await client.post(
                "/status/simulate-mo", data={"from": "+4799999999", "text": "x", **modem}
            )
            assert arrived.status_code == 422
            assert arrived.json()["detail"] == (
                'this gateway has no simulated modem (a [[modems]] with driver = "simulated")'
            )
    gateway.stop()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/status", "GET, HEAD"),
        ("DELETE", "/status/data", "GET, HEAD"),
        ("PUT", "/status/assets/status.js", "GET, HEAD"),
        ("GET", "/status/send", "POST"),
        ("OPTIONS", "/status/simulate-mo", "POST"),
    ],
)
async def test_a_method_a_page_does_not_take_gets_405_naming_those_it_does(
    gateway: Gateway, method: str, path: str, allow: str
) -> None:
    """RFC 9110 section 15.5.6: a 405 carries Allow, so that the client learns what to use."""
    async with httpx.AsyncClient(base_url=url(gateway), auth=AUTH) as client:
        refused = await client.request(method, path)
    assert (refused.status_code, refused.headers.get("allow")) == (405, allow)
    assert refused.json()["detail"] == f"{method} is not one of {allow}"


async def test_a_form_post_from_another_site_is_refused(gateway: Gateway) -> None:
    """Cross-site request forgery: a page elsewhere posts a form to the status page and the
    browser adds the operator's cached Basic credentials. It must send and inject nothing."""
    async with httpx.AsyncClient(base_url=url(gateway), auth=AUTH) as client:
        host = client.base_url.netloc.decode()
        forged = [
            {"origin": "http://evil.example", "sec-fetch-site": "cross-site"},
            {"origin": f"http://{host.split(':')[0]}:1", "sec-fetch-site": "same-site"},
            {"origin": "http://evil.example"},  # a browser without Sec-Fetch-*
            {"origin": "null"},  # a sandboxed frame or a data: page
        ]
        for headers in forged:
            for content_type in ("application/x-www-form-urlencoded", "text/plain"):
                sent = await client.post(
                    "/status/send",
                    content="to=%2B4741000000&text=forged",
                    headers={**headers, "content-type": content_type},
                )
                assert sent.status_code == 403, (headers, content_type)
            arrived = await client.post(
                "/status/simulate-mo",
                data={"from": "+4799", "text": "forged"},
                headers=headers,
            )
            assert arrived.status_code == 403, headers
        data = (await client.get("/status/data")).json()
        assert data["messages"] == [] and data["inbound"] == []
        # The page's own posts: a browser's, and a script's without those headers.
        own = {"origin": f"http://{host}", "sec-fetch-site": "same-origin"}
        for headers in (own, {"origin": f"http://{host}"}, {}):
            sent = await client.post(
                "/status/send", data={"to": "+4741000000", "text": "ours"}, headers=headers
            )
            assert sent.status_code == 200, headers


@pytest.mark.parametrize("trusted", [True, False])
async def test_behind_a_trusted_proxy_the_forms_origin_is_the_forwarded_host(
    config: Config, nursery: trio.Nursery, trusted: bool
) -> None:
    """A proxy that passes on its own Host: a browser on plain HTTP (no Sec-Fetch-Site) names
    the page's origin, the proxy's host, which the proxy forwards in X-Forwarded-Host. Only a
    trusted proxy's is believed, or any client could name the origin it forges."""
    gateway = await start_behind_proxy(config, nursery, trusted=trusted)
    assert gateway.bound is not None
    base = f"http://127.0.0.1:{gateway.bound.http_port}"
    browser = {"origin": "http://sms.example.com", "x-forwarded-host": "sms.example.com"}
    async with httpx.AsyncClient(base_url=base) as client:
        sent = await client.post(
            "/status/send", auth=AUTH, data={"to": "+4741000000", "text": "hi"}, headers=browser
        )
    gateway.stop()
    assert sent.status_code == (200 if trusted else 403)


async def test_every_status_answer_is_hardened_and_its_data_never_cached(
    gateway: Gateway,
) -> None:
    """The page may run only its own script, never be framed (clickjacking of its forms) or
    sniffed; what holds phone numbers and texts is never stored by a browser or proxy."""
    async with httpx.AsyncClient(base_url=url(gateway), auth=AUTH) as client:
        answers = {
            "page": await client.get("/status"),
            "data": await client.get("/status/data"),
            "send": await client.post("/status/send", data={"to": "+4741000000", "text": "x"}),
            "refused": await client.get("/status/data", auth=("demo", "nope")),
            "script": await client.get("/status/assets/status.js"),
        }
    for name, answer in answers.items():
        headers = answer.headers
        policy = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy, name
        assert "script-src 'self'" in policy and "default-src 'none'" in policy, name
        assert headers.get("x-frame-options") == "DENY", name
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("referrer-policy") == "no-referrer", name
        expected = "no-cache" if name == "script" else "no-store"
        assert headers.get_list("cache-control") == [expected], name
