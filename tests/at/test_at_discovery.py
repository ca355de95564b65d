"""Finding a modem by IMEI or ICCID among serial ports, again after it re-enumerates under
another path, and never probing a port another driver holds. Real pseudo-terminals served by
the simulator, with its /dev/serial/by-id style links; real time, bounded by fail_after."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from drivers.at import AtModem, AtOptions
from drivers.events import HealthChanged, ModemState
from drivers.gsm import encode_message
from drivers.modem import OutgoingPart
from drivers.ports import CLAIMS, PortRegistry, candidate_ports, device_key
from drivers.simulator import Simulator, SimulatorOptions, serve_pty
from drivers.transport import open_serial

IMEI_A = "356938035643809"
IMEI_B = "490154203237518"
ICCID_B = "8947080099887766554"


def fast(**options: object) -> dict[str, object]:
    """Short real-time timeouts: these tests run over ptys with the real clock."""
    return {
        "health_interval": 0.0,
        "sync_timeout": 0.5,
        "command_timeout": 2.0,
        "probe_timeout": 3.0,
        "reopen_backoff_initial": 0.05,
        "reopen_backoff_max": 0.2,
        **options,
    }


def part(text: str) -> OutgoingPart:
    (encoded,) = encode_message(text).parts
    return OutgoingPart(recipient="+4799999999", part=encoded)


async def wait_state(modem: AtModem, state: ModemState) -> HealthChanged:
    while True:
        event = await modem.events.receive()
        if isinstance(event, HealthChanged) and event.state is state:
            return event


def recording(opened: list[str]) -> Callable[[str], Awaitable[trio.abc.Stream]]:
    async def open_path(path: str) -> trio.abc.Stream:
        opened.append(device_key(path))
        return await open_serial(path)

    return open_path


async def test_each_driver_finds_its_modem_by_identity(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    sims = [
        Simulator(SimulatorOptions(imei=IMEI_A, link_dir=str(tmp_path))),
        Simulator(SimulatorOptions(imei=IMEI_B, iccid=ICCID_B, link_dir=str(tmp_path))),
    ]
    for sim in sims:
        await nursery.start(serve_pty, sim)
    scan = [f"{tmp_path}/*"]
    by_imei = AtModem("a", AtOptions(**fast(imei=IMEI_A, scan=scan)))  # type: ignore[arg-type]
    by_iccid = AtModem("b", AtOptions(**fast(iccid=ICCID_B, scan=scan)))  # type: ignore[arg-type]
    with trio.fail_after(20):
        await nursery.start(by_imei.run)
        await nursery.start(by_iccid.run)
        await by_imei.send(part("to A"))
        await by_iccid.send(part("to B"))
    assert [sms.text for sms in sims[0].network.sent] == ["to A"]
    assert [sms.text for sms in sims[1].network.sent] == ["to B"]
    assert by_imei.health().port == os.path.join(tmp_path, sims[0].link_name)
    assert (by_iccid.health().imei, by_iccid.health().iccid) == (IMEI_B, ICCID_B)
    assert CLAIMS.holder(by_imei.health().port) == "a"
    assert CLAIMS.holder(by_iccid.health().port) == "b"


async def test_found_again_after_re_enumeration_under_another_path(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    sim = Simulator(SimulatorOptions(imei=IMEI_A, link_dir=str(by_id)))
    first_path = await nursery.start(serve_pty, sim)
    # Configured with the name the stick had (its /dev/ttyUSB0): once that is gone, the IMEI
    # finds it. Not with its pty's own name: a closed pty's number goes to the next pty any
    # program opens, maybe another simulator answering this IMEI, which the driver would
    # then take (and lock, from the program that opened it) for this modem.
    configured = tmp_path / "ttyUSB0"
    configured.symlink_to(first_path)
    modem = AtModem("a", AtOptions(**fast(port=str(configured), imei=IMEI_A, scan=[f"{by_id}/*"])))  # type: ignore[arg-type]
    with trio.fail_after(20):
        await nursery.start(modem.run)
        assert modem.health().port == str(configured)
        configured.unlink()  # the stick goes, and its device node with it
        new_path = await sim.vanish(0.3)
        assert new_path is not None and new_path != first_path
        await wait_state(modem, ModemState.FAILED)
        await wait_state(modem, ModemState.READY)
        await modem.send(part("after re-enumeration"))
    assert device_key(modem.health().port) == new_path
    assert [sms.text for sms in sim.network.sent] == ["after re-enumeration"]
    assert modem.health().recoveries >= 1


async def test_found_by_identity_when_its_old_path_is_another_device_held_elsewhere(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # The stick came back under another name, and its old one went to a device another program
    # holds: the modem is looked for by its IMEI instead of failing on that lock until it goes.
    master, slave = os.openpty()
    taken = os.ttyname(slave)
    other = os.open(taken, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        sim = Simulator(SimulatorOptions(imei=IMEI_A, link_dir=str(tmp_path)))
        await nursery.start(serve_pty, sim)
        modem = AtModem("a", AtOptions(**fast(port=taken, imei=IMEI_A, scan=[f"{tmp_path}/*"])))  # type: ignore[arg-type]
        with trio.fail_after(20):
            await nursery.start(modem.run)
            await modem.send(part("found by its IMEI"))
        assert modem.health().port == os.path.join(tmp_path, sim.link_name)
        assert modem.health().recoveries == 0
        assert [sms.text for sms in sim.network.sent] == ["found by its IMEI"]
    finally:
        for fd in (other, slave, master):
            os.close(fd)


async def test_a_held_old_path_and_no_modem_elsewhere_says_both(tmp_path: Path) -> None:
    master, slave = os.openpty()
    taken = os.ttyname(slave)
    other = os.open(taken, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    modem = AtModem("a", AtOptions(**fast(port=taken, imei=IMEI_A, scan=[f"{tmp_path}/*"])))  # type: ignore[arg-type]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(modem.run)
            with trio.fail_after(20):
                failed = await wait_state(modem, ModemState.FAILED)
            nursery.cancel_scope.cancel()
    finally:
        for fd in (other, slave, master):
            os.close(fd)
    assert f"{taken}: in use by another program" in failed.detail
    assert f"holds IMEI {IMEI_A}" in failed.detail


async def test_a_port_held_by_another_driver_is_never_probed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    sim = Simulator(SimulatorOptions(imei=IMEI_A, link_dir=str(tmp_path)))
    await nursery.start(serve_pty, sim)
    holder = AtModem("holder", AtOptions(**fast(imei=IMEI_A, scan=[f"{tmp_path}/*"])))  # type: ignore[arg-type]
    opened: list[str] = []
    # Misconfigured with the same IMEI: it scans the same ports, and must keep off.
    second = AtModem(
        "second",
        AtOptions(**fast(imei=IMEI_A, scan=[f"{tmp_path}/*"])),  # type: ignore[arg-type]
        open_path=recording(opened),
    )
    with trio.fail_after(20):
        await nursery.start(holder.run)
        nursery.start_soon(second.run)
        failed = await wait_state(second, ModemState.FAILED)
        await holder.send(part("undisturbed"))
    assert "no port" in failed.detail and IMEI_A in failed.detail
    assert opened == []
    assert holder.health().state is ModemState.READY
    assert [sms.text for sms in sim.network.sent] == ["undisturbed"]


def test_candidate_ports_keep_off_terminals_unless_asked(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        pty = os.ttyname(slave)
        link = tmp_path / "usb-Modem_1234-if00-port0"
        link.symlink_to(pty)
        (tmp_path / "same-device").symlink_to(pty)
        (tmp_path / "dangling").symlink_to(tmp_path / "gone")
        # A link someone made on purpose counts, once per device; a broken link does not.
        assert candidate_ports([f"{tmp_path}/usb-*", f"{tmp_path}/*"]) == [str(link)]
        # A pattern that reaches /dev/pts without naming it finds nothing there.
        assert pty not in candidate_ports(["/dev/pt?/*"])
        assert pty in candidate_ports(["/dev/pts/*"])
    finally:
        os.close(master)
        os.close(slave)


def test_registry_sees_a_link_and_its_target_as_one_device(tmp_path: Path) -> None:
    target = tmp_path / "ttyUSB7"
    target.touch()
    link = tmp_path / "usb-Quectel_EC25-if02-port0"
    link.symlink_to(target)
    registry = PortRegistry()
    assert registry.claim(str(link), "m1")
    assert not registry.claim(str(target), "m2")
    assert registry.claim(str(target), "m1")  # its holder may claim it again
    assert registry.holder(str(target)) == "m1"
    registry.release(str(target), "m2")  # only the holder releases
    assert registry.holder(str(link)) == "m1"
    registry.release_all("m1")
    assert registry.holder(str(link)) is None
    assert registry.claim(str(target), "m2")


@pytest.mark.parametrize("url", ["socket://127.0.0.1:7000", "loop://"])
def test_urls_are_their_own_device(url: str) -> None:
    assert device_key(url) == url
