"""The signer's coroutines run on one event loop per thread, made once, never inside a running loop."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings

import pytest

from signer import aio


async def running_loop() -> asyncio.AbstractEventLoop:
    await asyncio.sleep(0)
    return asyncio.get_running_loop()


def test_a_thread_keeps_its_loop_and_each_thread_has_its_own() -> None:
    first, second = aio.run(running_loop()), aio.run(running_loop())
    assert first is second and not first.is_closed()
    other: list[asyncio.AbstractEventLoop] = []
    thread = threading.Thread(target=lambda: other.append(aio.run(running_loop())))
    thread.start()
    thread.join()
    assert other[0] is not first


def test_the_loop_of_an_ended_thread_is_closed_without_a_warning() -> None:
    loops: list[asyncio.AbstractEventLoop] = []
    gc.collect()  # what earlier tests left is not this test's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        thread = threading.Thread(target=lambda: loops.append(aio.run(running_loop())))
        thread.start()
        thread.join()
        del thread
        gc.collect()
    assert loops[0].is_closed()
    assert not [w for w in caught if "event loop" in str(w.message)]


def test_an_error_comes_out_and_the_loop_stays_usable() -> None:
    async def fails() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        aio.run(fails())
    assert aio.run(running_loop()) is aio.run(running_loop())


def test_inside_a_running_loop_it_refuses_as_asyncio_run_does() -> None:
    async def nested() -> None:
        coroutine = running_loop()
        try:
            aio.run(coroutine)
        finally:
            coroutine.close()

    with pytest.raises(RuntimeError):
        asyncio.run(nested())
