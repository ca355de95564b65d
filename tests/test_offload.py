"""Big bodies are decoded in worker threads of their own: a flood of them from clients that
have not logged in yet takes at most DECODING_THREADS, and the threads the store and the
modems' ports use stay free."""

from __future__ import annotations

import threading

import trio

from edgegw.offload import DECODED_IN_A_THREAD, DECODING_THREADS, decoded

BIG = b"x" * (DECODED_IN_A_THREAD + 1)


async def test_big_bodies_take_their_own_threads_and_no_more() -> None:
    started = 0
    lock = threading.Lock()
    release = threading.Event()
    all_started = trio.Event()

    def slow(body: bytes) -> int:
        nonlocal started
        with lock:
            started += 1
            if started == DECODING_THREADS:
                trio.from_thread.run_sync(all_started.set)
        release.wait(10)
        return len(body)

    sizes: list[int] = []

    async def decode_one() -> None:
        sizes.append(await decoded(slow, BIG))

    async with trio.open_nursery() as decoding:
        for _ in range(DECODING_THREADS + 3):
            decoding.start_soon(decode_one)
        with trio.fail_after(10):
            await all_started.wait()
            # Meanwhile a thread of the shared limiter (a store read, say) is had at once.
            assert await trio.to_thread.run_sync(lambda: "read") == "read"
        assert started == DECODING_THREADS
        release.set()
    assert sizes == [len(BIG)] * (DECODING_THREADS + 3)


async def test_a_small_body_is_decoded_on_the_event_loop() -> None:
    loop = threading.get_ident()
    assert await decoded(lambda body: threading.get_ident(), b"x") == loop
