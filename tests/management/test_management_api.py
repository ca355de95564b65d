"""The Management API (spec section 5, both path styles) and /api/messages over real HTTP on
127.0.0.1, in virtual time: a batch scheduled for later is listed, inspected and stopped; its
messages are never sent and their DRs reach the customer. Auth, formats, filters, pages, cancel."""

from __future__ import annotations

import base64
import functools
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
import trio.testing
from support.store import fill_disk, new_message

from drivers.events import InboundSms, ModemEvent, ModemState, StatusReportReceived
from drivers.modem import Health, OutgoingPart
from edgegw.clock import Clock
from edgegw.config import DispatchConfig, ServiceConfig
from edgegw.delivery.config import SmtpRelayConfig
from edgegw.delivery.fanout import final_outcomes
from edgegw.delivery.worker import Deliveries
from edgegw.http.app import make_app
from edgegw.http.management import management_routes
from edgegw.http.puzzel import MessageChunks
from edgegw.http.server import HttpLimits, Request, Response, serve_http
from edgegw.model import (
    MessageRequest,
    MessageState,
    MessageView,
    SendRequest,
    SendResponse,
    SendWindow,
    Settings,
    StatusCode,
)
from edgegw.networks import Networks
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.management import STOP_CHUNK, Management
from edgegw.pipeline.submit import Submitter
from edgegw.store import AnswerSeal, Store, Topic, run_inline

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z = 10:00 in Oslo (CEST)
LATER = SendWindow(startDate="2025-08-05", startTime="12:00:00")  # two hours ahead


class FakeModem:
    """Takes every part at once and remembers it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[OutgoingPart] = []
        self._events = trio.open_memory_channel[ModemEvent](1)[1]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def send(self, outgoing: OutgoingPart) -> int:
        await trio.sleep(0.5)
        self.sent.append(outgoing)
        return len(self.sent) % 256

    async def acknowledge(self, event: InboundSms | StatusReportReceived) -> None:
        return None

    def health(self) -> Health:
        return Health(state=ModemState.READY)

    @property
    def events(self) -> trio.MemoryReceiveChannel[ModemEvent]:
        return self._events


class Customer:
    """The service's DR endpoint: records the DRs it receives."""

    def __init__(self) -> None:
        self.drs: list[dict[str, object]] = []

    async def app(self, request: Request) -> Response:
        self.drs += json.loads(request.body)["dr"]
        return Response(status=200)


def service(service_id: int, dr_url: str) -> ServiceConfig:
    return msgspec.convert(
        {
            "id": service_id,
            "name": f"service-{service_id}",
            "username": f"user{service_id}",
            "password": f"secret{service_id}",
            "delivery_reports": True,
            "dr": {"url": dr_url},
        },
        ServiceConfig,
    )


class Backend:
    """The HTTP Backend over a submitter and store, as the gateway implements it."""

    def __init__(self, submitter: Submitter, store: Store, services: list[ServiceConfig]):
        self.submitter = submitter
        self.store = store
        self.logins = {s.username: (s.password, s.id) for s in services}

    async def submit(self, request: SendRequest, seal: AnswerSeal | None = None) -> SendResponse:
        return await self.submitter.submit(request, seal)

    async def submit_stream(
        self,
        request: SendRequest,
        messages: MessageChunks,
        emit: Callable[[SendResponse], Awaitable[None]],
        refused: StatusCode | None,
    ) -> None:
        await self.submitter.submit_stream(request, messages, emit, refused)

    async def refusal(self, request: SendRequest) -> StatusCode | None:
        return await self.submitter.refusal(request)

    async def authenticate(self, username: str, password: str) -> int | None:
        expected = self.logins.get(username)
        return expected[1] if expected is not None and expected[0] == password else None

    async def message_view(self, service_id: int, message_id: str) -> MessageView | None:
        return await self.store.message_view(service_id, message_id)


class Rig:
    def __init__(self, port: int, modem: FakeModem, customer: Customer, store: Store) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.modem = modem
        self.customer = customer
        self.store = store

    def client(self, service_id: int | None = 1) -> httpx.AsyncClient:
        auth = None
        if service_id is not None:
            auth = httpx.BasicAuth(f"user{service_id}", f"secret{service_id}")
        return httpx.AsyncClient(base_url=self.base, auth=auth)

    async def send_batch(
        self,
        batch: str,
        count: int,
        *,
        service_id: int = 1,
        window: SendWindow | None = LATER,
        validity: int | None = None,
    ) -> list[str]:
        request = SendRequest(
            serviceId=service_id,
            username=f"user{service_id}",
            password=f"secret{service_id}",
            batchReference=batch,
            message=[
                MessageRequest(
                    recipient=f"+474100000{index}",
                    content=f"message {index}",
                    clientReference=f"{batch}-{index}",
                    settings=Settings(sendWindow=window, validity=validity),
                )
                for index in range(count)
            ],
        )
        async with self.client(service_id) as client:
            response = await client.post(
                "/gw/rs/sendMessages",
                json=msgspec.to_builtins(request),
                headers={"accept": "application/json"},
            )
        assert response.status_code == 200
        return [status["messageId"] for status in response.json()["messageStatus"]]


@pytest.fixture
async def rig(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Rig]:
    # Tests that use it ask for autojump_clock themselves: pytest-trio takes the clock from
    # the test's own arguments.
    yield await start(nursery, tmp_path)


async def start(
    nursery: trio.Nursery,
    tmp_path: Path,
    *,
    loopback: bool = False,
    trusted_proxies: Networks | None = None,
    dispatch: bool = True,
) -> Rig:
    clock = Clock(start_epoch=START)
    store = Store(tmp_path / "db", clock=clock, offload=run_inline, final_outcomes=final_outcomes)
    await nursery.start(store.run)
    customer = Customer()
    customer_port = await nursery.start(serve_http, customer.app, "127.0.0.1", 0, HttpLimits())
    dr_url = f"http://127.0.0.1:{customer_port}/dr"
    services = [service(1, dr_url), service(2, dr_url)]
    deliveries = Deliveries(store, clock, services, SmtpRelayConfig())
    store.subscribe(Topic.CALLBACKS, deliveries.wake)
    await nursery.start(deliveries.run)
    modem = FakeModem("m1")
    dispatcher = Dispatcher(
        store, {"m1": modem}, services, DispatchConfig(), clock, rng=random.Random(1)
    )
    if dispatch:
        await nursery.start(dispatcher.run)
        store.subscribe(Topic.QUEUE, dispatcher.wake)
    submitter = Submitter(services, store, clock)
    backend = Backend(submitter, store, services)
    routes = management_routes(
        Management(store, clock),
        backend.authenticate,
        {1, 2},
        allow_unauthenticated_loopback=loopback,
    )
    app = make_app(backend, routes=[routes])
    port = await nursery.start(
        functools.partial(
            serve_http, app, "127.0.0.1", 0, HttpLimits(), trusted_proxies=trusted_proxies
        )
    )
    return Rig(port, modem, customer, store)


@pytest.mark.parametrize("prefix", ["/mgmt/rs/service/1", "/management/1"])
async def test_list_get_and_stop_a_scheduled_batch(
    rig: Rig, prefix: str, autojump_clock: trio.testing.MockClock
) -> None:
    ids = await rig.send_batch("a/b c", 3)
    await rig.send_batch("other", 1)
    async with rig.client() as client:
        listed = await client.get(f"{prefix}/batch/")
        assert listed.status_code == 200
        assert listed.headers["content-type"] == "application/json"
        assert listed.json() == {
            "messageBatch": [
                {"clientBatchReference": "a/b c", "totalSize": 3, "onHold": 0},
                {"clientBatchReference": "other", "totalSize": 1, "onHold": 0},
            ]
        }
        assert (await client.get(f"{prefix}/batch")).json() == listed.json()
        one = await client.get(f"{prefix}/batch/a%2Fb%20c")
        assert one.json() == {
            "messageBatch": {"clientBatchReference": "a/b c", "totalSize": 3, "onHold": 0}
        }
        stopped = await client.delete(f"{prefix}/batch/a%2Fb%20c")
        assert stopped.status_code == 200
        assert stopped.json() == {
            "serviceId": 1,
            "clientBatchReference": "a/b c",
            "stoppedMessages": [
                {"messageId": message_id, "clientMessageReference": f"a/b c-{index}"}
                for index, message_id in enumerate(ids)
            ],
        }
        after = await client.get(f"{prefix}/batch/a%2Fb%20c")
        assert after.json()["messageBatch"]["totalSize"] == 0
        again = await client.delete(f"{prefix}/batch/a%2Fb%20c")
        assert again.json()["stoppedMessages"] == []
        listed = await client.get(f"{prefix}/batch/")
        assert [b["clientBatchReference"] for b in listed.json()["messageBatch"]] == ["other"]
    # Past the window: the other batch goes out, the stopped one never does.
    await trio.sleep(3 * 3600)
    assert [part.recipient for part in rig.modem.sent] == ["+4741000000"]
    for message_id in ids:
        record = await rig.store.message(message_id)
        assert record is not None and record.state is MessageState.CANCELLED
    reported = {dr["messageid"]: dr["statuscode"] for dr in rig.customer.drs}
    assert {message_id: reported.get(message_id) for message_id in ids} == dict.fromkeys(ids, 371)


@pytest.mark.parametrize("prefix", ["/mgmt/rs/service/1", "/management/1"])
async def test_head_answers_as_get_without_the_body_and_stops_nothing(
    rig: Rig, prefix: str, autojump_clock: trio.testing.MockClock
) -> None:
    """RFC 9110 section 9.3.2: HEAD is GET without the content, on every resource that takes
    GET; on a batch it only looks, it never stops it."""
    (message_id,) = await rig.send_batch("h", 1)
    async with rig.client() as client:
        for path in (
            f"{prefix}/batch/",
            f"{prefix}/batch/h",
            "/api/messages?batch=h",
            f"/api/messages/{message_id}",
        ):
            got = await client.get(path)
            head = await client.head(path)
            assert (head.status_code, head.content) == (200, b""), path
            assert head.headers["content-type"] == got.headers["content-type"], path
            assert head.headers["content-length"] == str(len(got.content)), path
        assert (await client.get(f"{prefix}/batch/h")).json()["messageBatch"]["totalSize"] == 1
        listed = await client.put(f"{prefix}/batch/")
        assert (listed.status_code, listed.headers["allow"]) == (405, "GET, HEAD")
        one = await client.put(f"{prefix}/batch/h")
        assert (one.status_code, one.headers["allow"]) == (405, "GET, HEAD, DELETE")
    record = await rig.store.message(message_id)
    assert record is not None and record.state is MessageState.QUEUED


async def test_a_big_batch_is_stopped_a_chunk_a_commit_letting_other_writes_in(
    rig: Rig, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A stop cancels STOP_CHUNK messages a write job: a message stored while a big batch is
    being stopped is committed before the stop ends, not behind one job of the whole batch."""
    big = [  # due in an hour: none is claimed for sending meanwhile
        msgspec.structs.replace(
            new_message(f"big{index:09d}"), report_to_customer=True, not_before=START + 3600
        )
        for index in range(4 * STOP_CHUNK)
    ]
    await rig.store.insert_messages(big)
    order: list[str] = []
    stored = trio.Event()

    async def store_another() -> None:
        await rig.store.insert_messages([new_message("another00001")])
        order.append("another stored")
        stored.set()

    def after_commit() -> None:  # each stop job queues its DRs
        if not order:
            order.append("stopping")
            nursery.start_soon(store_another)

    rig.store.subscribe(Topic.CALLBACKS, after_commit)
    stopped = await Management(rig.store, Clock(start_epoch=START)).stop_batch(1, "batch-1")
    order.append("stopped")
    await stored.wait()
    assert order == ["stopping", "another stored", "stopped"]
    assert stopped is not None
    assert [message.messageId for message in stopped] == [message.id for message in big]
    await trio.sleep(60)  # each gets its DR, a request of up to batch_max a second
    assert sorted(str(dr["messageid"]) for dr in rig.customer.drs) == [m.id for m in big]
    assert {dr["statuscode"] for dr in rig.customer.drs} == {371}


async def test_mgmt_rs_answers_text_xml_when_asked(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    ids = await rig.send_batch("x&y", 1)
    async with rig.client() as client:
        headers = {"accept": "text/xml"}
        listed = await client.get("/mgmt/rs/service/1/batch/", headers=headers)
        assert listed.headers["content-type"] == "text/xml"
        assert listed.text == (
            '<?xml version="1.0" encoding="UTF-8"?>\n<getBatchListResponse><messageBatch>'
            "<clientBatchReference>x&amp;y</clientBatchReference><totalSize>1</totalSize>"
            "<onHold>0</onHold></messageBatch></getBatchListResponse>"
        )
        stopped = await client.delete("/mgmt/rs/service/1/batch/x%26y", headers=headers)
        assert stopped.text == (
            '<?xml version="1.0" encoding="UTF-8"?>\n<stopBatchResponse><serviceId>1</serviceId>'
            "<clientBatchReference>x&amp;y</clientBatchReference><stoppedMessages>"
            f"<messageId>{ids[0]}</messageId><clientMessageReference>x&amp;y-0"
            "</clientMessageReference></stoppedMessages></stopBatchResponse>"
        )


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/xml", "text/xml"),
        ("application/json;q=0, text/xml", "text/xml"),  # JSON is not acceptable at all
        ("text/xml, application/json;q=0.5", "text/xml"),
        ("application/xml;q=0.9, application/json;q=0.8", "text/xml"),
        ("application/json, text/xml;q=0.5", "application/json"),
        ("text/xml;q=0, */*;q=0.1", "application/json"),
    ],
)
async def test_mgmt_rs_answers_the_format_accept_prefers(
    rig: Rig, accept: str | None, content_type: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Accept's quality values decide (RFC 9110 section 12.5.1), as for a send; JSON when it
    names neither or ranks them alike (spec 5.1 lists it first)."""
    headers = {} if accept is None else {"accept": accept}
    async with rig.client() as client:
        listed = await client.get("/mgmt/rs/service/1/batch/", headers=headers)
    assert (listed.status_code, listed.headers["content-type"]) == (200, content_type)


async def test_unknown_batch_is_404_problem_and_an_empty_list_is_200(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    async with rig.client() as client:
        empty = await client.get("/management/1/batch")
        assert (empty.status_code, empty.json()) == (200, {"messageBatch": []})
        for method in ("GET", "DELETE"):
            missing = await client.request(method, "/management/1/batch/nope")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            problem = missing.json()
            assert problem["status"] == 404 and problem["instance"] == "/management/1/batch/nope"
            assert set(problem) == {"type", "title", "status", "detail", "instance"}


@pytest.mark.parametrize("prefix", ["/mgmt/rs/service/1", "/management/1"])
async def test_credentials_are_required_and_must_be_the_services(
    rig: Rig, prefix: str, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.send_batch("mine", 1)
    for client in (rig.client(None), rig.client(2)):
        async with client:
            refused = await client.get(f"{prefix}/batch/")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == 'Basic realm="edgegw"'
            assert (await client.delete(f"{prefix}/batch/mine")).status_code == 401
    async with httpx.AsyncClient(base_url=rig.base, auth=("user1", "wrong")) as client:
        assert (await client.get(f"{prefix}/batch/")).status_code == 401
    async with rig.client() as client:
        assert (await client.get(f"{prefix}/batch/mine")).status_code == 200


async def test_loopback_without_credentials_only_when_allowed(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig = await start(nursery, tmp_path, loopback=True)
    await rig.send_batch("b", 2)
    async with rig.client(None) as client:
        listed = await client.get("/management/1/batch")
        assert listed.status_code == 200 and len(listed.json()["messageBatch"]) == 1
        # The documented path still asks for credentials, and so does an unknown service.
        assert (await client.get("/mgmt/rs/service/1/batch/")).status_code == 401
        assert (await client.get("/management/9/batch")).status_code == 401
    async with httpx.AsyncClient(base_url=rig.base, auth=("user1", "wrong")) as client:
        # Wrong credentials are wrong, even from loopback.
        assert (await client.get("/management/1/batch")).status_code == 401


async def test_a_browser_page_rebound_to_loopback_is_not_loopback(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """DNS rebinding: a page on a name its owner points at 127.0.0.1 makes the browser call
    from loopback, with that name in Host; it must neither list nor stop a batch."""
    rig = await start(nursery, tmp_path, loopback=True)
    await rig.send_batch("b", 2)
    port = rig.base.rsplit(":", 1)[1]
    rebound = {"host": f"attacker.example:{port}", "origin": f"http://attacker.example:{port}"}
    async with rig.client(None) as client:
        assert (await client.get("/management/1/batch", headers=rebound)).status_code == 401
        assert (await client.delete("/management/1/batch/b", headers=rebound)).status_code == 401
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]", "LOCALHOST"):
            listed = await client.get("/management/1/batch", headers={"host": host})
            assert listed.status_code == 200, host
            assert listed.json()["messageBatch"][0]["totalSize"] == 2


async def test_a_client_behind_a_trusted_proxy_on_the_box_is_not_loopback(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig = await start(nursery, tmp_path, loopback=True, trusted_proxies=Networks(["127.0.0.1"]))
    await rig.send_batch("b", 2)
    async with rig.client(None) as client:

        async def status(forwarded_for: str | None) -> int:
            headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
            return (await client.get("/management/1/batch", headers=headers)).status_code

        assert await status("203.0.113.7") == 401
        # The proxy passing on a client of its own on the box: loopback.
        assert await status("127.0.0.1") == 200
        # A request from the proxy's address that names no client may be anyone's the proxy
        # passed on without the header: not loopback, though it may be a client on the box.
        assert await status(None) == 401
        assert await status("unknown") == 401
        assert await status("203.0.113.7, garbage") == 401


async def test_messages_are_listed_with_filters_and_stable_pages(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    first = await rig.send_batch("p", 5)
    await trio.sleep(10)
    second = await rig.send_batch("q", 2, window=None)
    await rig.send_batch("r", 1, service_id=2)
    await trio.sleep(60)  # batch q is sent
    async with rig.client() as client:
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/api/messages", params=params)).json()
            seen += [message["messageId"] for message in page["messages"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
            page_cursor = cursor
        assert seen == first + second  # service 2's message is not listed
        queued = (await client.get("/api/messages", params={"state": "queued"})).json()
        assert [m["messageId"] for m in queued["messages"]] == first
        sent = (await client.get("/api/messages?state=sent&batch=q")).json()
        assert [m["messageId"] for m in sent["messages"]] == second
        one = await client.get("/api/messages", params={"recipient": "+4741000001", "batch": "p"})
        assert [m["messageId"] for m in one.json()["messages"]] == [first[1]]
        # As sendMessages takes it: a + the query string made a space, spaces, a 00 prefix.
        for written in ("+4741000001", "%2B47%2041%2000%2000%2001", "004741000001"):
            same = await client.get(f"/api/messages?batch=p&recipient={written}")
            assert [m["messageId"] for m in same.json()["messages"]] == [first[1]], written
        since = (await client.get("/api/messages?since=2025-08-05T08:00:05Z")).json()
        assert [m["messageId"] for m in since["messages"]] == second
        # An offset's raw +, which the query string makes a space, is read as the + it was.
        for written in ("10:00:05+02:00", "10:00:05%2B02:00", "10:00:05+0200"):
            offset = await client.get(f"/api/messages?since=2025-08-05T{written}")
            assert [m["messageId"] for m in offset.json()["messages"]] == second, written
        until = (await client.get(f"/api/messages?until={START + 5}")).json()
        assert [m["messageId"] for m in until["messages"]] == first
        # A landline is no longer taken for sending, but one stored before stays findable.
        landline = await client.get("/api/messages", params={"recipient": "+4722000000"})
        assert (landline.status_code, landline.json()["messages"]) == (200, [])
        not_a_number = await client.get("/api/messages?recipient=4741000001")
        assert not_a_number.status_code == 400
        assert "not an international number" in not_a_number.json()["detail"]
        # Cursors not handed out: a time that is no number, one cut before its message id.
        cut = base64.urlsafe_b64decode(page_cursor + "==").decode().partition("|")[0]
        forged = [
            base64.urlsafe_b64encode(raw.encode()).decode()
            for raw in ("nan|x", "inf|x", f"{cut}|", cut)
        ]
        for bad in (
            "state=lost",
            "limit=0",
            "limit=1001",
            "since=yesterday",
            "cursor=%%",
            "x=1",
            *(f"cursor={cursor}" for cursor in forged),
        ):
            response = await client.get(f"/api/messages?{bad}")
            assert response.status_code == 400, bad
            assert response.headers["content-type"] == "application/problem+json"
    async with rig.client(None) as client:
        assert (await client.get("/api/messages")).status_code == 401


async def test_cancel_one_queued_message_and_see_its_history(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    scheduled = await rig.send_batch("later", 1)
    now = await rig.send_batch("now", 1, window=None)
    await trio.sleep(30)
    async with rig.client() as client:
        cancelled = await client.delete(f"/api/messages/{scheduled[0]}")
        assert cancelled.status_code == 200
        assert cancelled.json() == {"messageId": scheduled[0], "state": "cancelled"}
        conflict = await client.delete(f"/api/messages/{scheduled[0]}")
        assert conflict.status_code == 409
        assert "cancelled" in conflict.json()["detail"]
        sent = await client.delete(f"/api/messages/{now[0]}")
        assert sent.status_code == 409 and "sent" in sent.json()["detail"]
        assert (await client.delete("/api/messages/nosuchid0000")).status_code == 404
        view = (await client.get(f"/api/messages/{scheduled[0]}")).json()
        assert view["state"] == "cancelled"
        assert [event["state"] for event in view["events"]][-1] == "cancelled"
        # Its part ends with it: nothing of a cancelled message waits to be sent.
        assert [(part["state"], part["error"]) for part in view["parts"]] == [
            ("cancelled", "not sent: the message ended cancelled")
        ]
        await trio.sleep(5)
        view = (await client.get(f"/api/messages/{scheduled[0]}")).json()
        assert view["events"][-1]["detail"] == "DR delivered to the customer (200)"
    async with rig.client(2) as client:
        assert (await client.delete(f"/api/messages/{now[0]}")).status_code == 404


async def test_a_message_past_its_validity_is_neither_deleted_nor_stopped_but_expired(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Messages whose validity (10 minutes, code 1) ran out before the expiry sweep came
    round to them (no dispatcher runs here) are no longer queued to stop: DELETE answers 409
    and a batch stop leaves them out, and each ends with DR 361 (validity expired) as the
    sweep would have left it, not 371 (cancelled)."""
    rig = await start(nursery, tmp_path, dispatch=False)
    (deleted,) = await rig.send_batch("late", 1, window=None, validity=1)
    (stopped,) = await rig.send_batch("late-too", 1, window=None, validity=1)
    await trio.sleep(15 * 60)
    async with rig.client() as client:
        refused = await client.delete(f"/api/messages/{deleted}")
        assert refused.status_code == 409 and "is expired" in refused.json()["detail"]
        stop = await client.delete("/mgmt/rs/service/1/batch/late-too")
        assert (stop.status_code, stop.json()["stoppedMessages"]) == (200, [])
    await trio.sleep(5)
    reported = {dr["messageid"]: dr["statuscode"] for dr in rig.customer.drs}
    assert reported == {deleted: 361, stopped: 361}


async def test_get_shows_a_message_past_its_validity_expired(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A message whose validity (10 minutes, code 1) ran out before the expiry sweep came
    round to it (no dispatcher runs here) shows as `expired`, not `queued`, with the sweep's
    history line and its doneAt, and its customer gets DR 361."""
    rig = await start(nursery, tmp_path, dispatch=False)
    (message_id,) = await rig.send_batch("late", 1, window=None, validity=1)
    await trio.sleep(15 * 60)
    async with rig.client() as client:
        view = (await client.get(f"/api/messages/{message_id}")).json()
    assert view["state"] == "expired" and view["doneAt"] is not None
    assert view["events"][-1]["detail"] == "validity period expired before sending"
    await trio.sleep(5)
    assert [(dr["messageid"], dr["statuscode"]) for dr in rig.customer.drs] == [(message_id, 361)]


async def test_get_of_another_services_message_past_its_validity_leaves_it_alone(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Service 2 asking for service 1's message, past its validity and not yet swept (no
    dispatcher runs here), gets 404 and changes nothing: the GET expired the message and sent
    service 1 its DR at the word of a service that cannot see it."""
    rig = await start(nursery, tmp_path, dispatch=False)
    (message_id,) = await rig.send_batch("late", 1, window=None, validity=1)
    await trio.sleep(15 * 60)
    async with rig.client(2) as client:
        assert (await client.get(f"/api/messages/{message_id}")).status_code == 404
    await trio.sleep(5)
    assert rig.customer.drs == []
    async with rig.client(1) as client:
        assert (await client.get(f"/api/messages/{message_id}")).json()["state"] == "expired"


async def shown_state(client: httpx.AsyncClient, message_id: str, *, listed: bool) -> str:
    """The message's state as `GET /api/messages/{id}` shows it, or as the list does."""
    if listed:
        return dict(await listed_states(client, ""))[message_id]
    answer = await client.get(f"/api/messages/{message_id}")
    assert answer.status_code == 200
    state: str = answer.json()["state"]
    return state


@pytest.mark.parametrize("listed", [False, True], ids=["one", "list"])
async def test_a_read_of_a_message_past_its_validity_while_the_disk_is_full_shows_it_queued(
    nursery: trio.Nursery, tmp_path: Path, listed: bool, autojump_clock: trio.testing.MockClock
) -> None:
    """While the store's disk is full, which holds the expiry sweep too, a GET of a message
    past its validity, or of the list, cannot expire it: it shows what the store holds,
    `queued`, rather than fail with 503 as a write does. Once there is room, the read expires
    it."""
    rig = await start(nursery, tmp_path, dispatch=False)
    (message_id,) = await rig.send_batch("late", 1, window=None, validity=1)
    await trio.sleep(15 * 60)
    await fill_disk(rig.store, message_id)
    async with rig.client() as client:
        assert await shown_state(client, message_id, listed=listed) == "queued"
        assert rig.store.unwritable is not None
        await rig.store.write(lambda conn: conn.execute("PRAGMA max_page_count = 1000000"))
        assert await shown_state(client, message_id, listed=listed) == "expired"


async def listed_states(client: httpx.AsyncClient, query: str) -> list[tuple[str, str]]:
    answer = await client.get(f"/api/messages?{query}")
    assert answer.status_code == 200
    return [(message["messageId"], message["state"]) for message in answer.json()["messages"]]


async def test_the_list_shows_messages_past_their_validity_expired(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A message whose validity (10 minutes, code 1) ran out before the expiry sweep came
    round to it (no dispatcher runs here) is listed as `expired`, as a GET of it shows it:
    `state=queued` leaves it out and `state=expired` finds it, and its customer gets DR 361,
    once, whenever the sweep comes. Service 2's message past its validity is left to the
    sweep: service 1's list does not show it."""
    rig = await start(nursery, tmp_path, dispatch=False)
    (late,) = await rig.send_batch("late", 1, window=None, validity=1)
    (waiting,) = await rig.send_batch("later", 1)
    (others,) = await rig.send_batch("theirs", 1, service_id=2, window=None, validity=1)
    await trio.sleep(15 * 60)
    async with rig.client() as client:
        assert await listed_states(client, "state=queued") == [(waiting, "queued")]
        assert await listed_states(client, "state=expired") == [(late, "expired")]
        assert await listed_states(client, "") == [(late, "expired"), (waiting, "queued")]
    stored = await rig.store.message(others)
    assert stored is not None and stored.state is MessageState.QUEUED
    await trio.sleep(5)
    assert [(dr["messageid"], dr["statuscode"]) for dr in rig.customer.drs] == [(late, 361)]
    assert await rig.store.expire_due() == [others]
    await trio.sleep(5)
    reported = sorted((dr["messageid"], dr["statuscode"]) for dr in rig.customer.drs)
    assert reported == sorted([(late, 361), (others, 361)])


@pytest.mark.parametrize("prefix", ["/mgmt/rs/service/1", "/management/1"])
async def test_a_batch_counts_no_message_past_its_validity_as_queued(
    nursery: trio.Nursery,
    tmp_path: Path,
    prefix: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A batch whose messages' validity (10 minutes, code 1) ran out before the expiry sweep
    came round to them (no dispatcher runs here) has no queued message left: its totalSize is
    0 and the batch list leaves it out, and each of its messages gets DR 361, once."""
    rig = await start(nursery, tmp_path, dispatch=False)
    late = await rig.send_batch("late", 2, window=None, validity=1)
    await rig.send_batch("later", 1)
    await trio.sleep(15 * 60)
    async with rig.client() as client:
        one = await client.get(f"{prefix}/batch/late")
        assert one.json() == {
            "messageBatch": {"clientBatchReference": "late", "totalSize": 0, "onHold": 0}
        }
        listed = await client.get(f"{prefix}/batch/")
        assert listed.json() == {
            "messageBatch": [{"clientBatchReference": "later", "totalSize": 1, "onHold": 0}]
        }
    assert await rig.store.expire_due() == []
    await trio.sleep(5)
    reported = sorted((dr["messageid"], dr["statuscode"]) for dr in rig.customer.drs)
    assert reported == sorted((message_id, 361) for message_id in late)


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjE6d3Jvbmc=", "Basic !!!", "Bearer abc", "Basic dXNlcjE="],
)
async def test_one_message_needs_the_services_basic_auth(
    rig: Rig, authorization: str | None, autojump_clock: trio.testing.MockClock
) -> None:
    (message_id,) = await rig.send_batch("one", 1)
    headers = {"authorization": authorization} if authorization else {}
    async with rig.client(None) as client:
        response = await client.get(f"/api/messages/{message_id}", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="edgegw"'


async def test_one_message_is_shown_to_its_service_only(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    (message_id,) = await rig.send_batch("one", 1)
    async with rig.client() as client:
        shown = await client.get(f"/api/messages/{message_id}")
        assert (shown.status_code, shown.headers["content-type"]) == (200, "application/json")
        stored = await rig.store.message_view(1, message_id)
        assert stored is not None
        assert msgspec.json.decode(shown.content, type=MessageView) == stored
        for path in ("/api/messages/nosuchid0000", f"/api/messages/{message_id}/parts"):
            assert (await client.get(path)).status_code == 404
        put = await client.put(f"/api/messages/{message_id}")
        assert (put.status_code, put.headers["allow"]) == (405, "GET, HEAD, DELETE")
    async with rig.client(2) as client:
        assert (await client.get(f"/api/messages/{message_id}")).status_code == 404
