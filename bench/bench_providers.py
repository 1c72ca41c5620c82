"""PromptLine's OpenAI-compatible provider against the bare-HTTP floor and the official SDK.

The same zero-latency local server as `bench_http_client.py` answers a chat completion and a
200-chunk stream. Each client does the whole job a caller needs: build the request, send it,
parse the answer into text and usage. Targets: PromptLine <= 1.2x the floor; `import` of the
provider module <= 150 ms.

    python bench/bench_providers.py        # callgrind rows need valgrind on PATH
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import orjson  # noqa: E402

import bench_http_client as h  # noqa: E402

TARGET_RATIO = 1.2
IMPORT_TARGET_MS = 150.0
CALLGRIND_N = (10, 60)


class FloorClient:
    """Hand-written HTTP/1.1 plus orjson: the least any client must do."""

    def __init__(self, port: int) -> None:
        self.raw = h.RawClient(port)

    async def call(self) -> str:
        doc = orjson.loads(await self.raw.call())
        return str(doc["choices"][0]["message"]["content"])

    async def stream(self) -> int:
        return await self.raw.stream()

    async def aclose(self) -> None:
        await self.raw.aclose()


class SdkClient:
    """The official `openai` SDK (what most frameworks use underneath)."""

    def __init__(self, port: int) -> None:
        import openai

        self.client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", max_retries=0
        )

    async def call(self) -> str:
        r = await self.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello."}]
        )
        return r.choices[0].message.content or ""

    async def stream(self) -> int:
        n = 0
        stream = await self.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello."}], stream=True
        )
        async for _ in stream:
            n += 1
        return n + 1  # the SDK swallows [DONE]; count it like the others

    async def aclose(self) -> None:
        await self.client.close()


class PromptLineClient:
    """`OpenAIChatProvider` over the shared transport."""

    def __init__(self, port: int) -> None:
        from promptline.core.messages import Message
        from promptline.models.http import SharedHttpTransport
        from promptline.models.openai_chat import OpenAIChatProvider
        from promptline.models.types import ModelRequest

        self.transport = SharedHttpTransport(max_connections_per_host=h.POOL)
        self.provider = OpenAIChatProvider(
            "openai",
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="bench",
            transport=self.transport,
        )
        self.request = ModelRequest(
            model="gpt-4o-mini", messages=[Message(role="user", content="Say hello.")]
        )

    async def call(self) -> str:
        return (await self.provider.complete(self.request)).message.text

    async def stream(self) -> int:
        n = 0
        async for _ in self.provider.stream(self.request):
            n += 1
        return n  # 200 deltas + the final response

    async def aclose(self) -> None:
        await self.provider.aclose()
        await self.transport.aclose()


class PromptLineHttp11Client(PromptLineClient):
    """`OpenAIChatProvider` over `Http11Transport` (HTTP/1.1 on asyncio streams)."""

    def __init__(self, port: int) -> None:
        from promptline.core.messages import Message
        from promptline.models.http11 import Http11Transport
        from promptline.models.openai_chat import OpenAIChatProvider
        from promptline.models.types import ModelRequest

        self.transport = Http11Transport(max_connections_per_host=h.POOL)  # type: ignore[assignment]
        self.provider = OpenAIChatProvider(
            "openai",
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="bench",
            transport=self.transport,
        )
        self.request = ModelRequest(
            model="gpt-4o-mini", messages=[Message(role="user", content="Say hello.")]
        )


CLIENTS: dict[str, Any] = {
    "floor (http + orjson)": FloorClient,
    "openai SDK": SdkClient,
    "PromptLine (http11, default)": PromptLineHttp11Client,
    "PromptLine (aiohttp)": PromptLineClient,
}


def main() -> None:
    server = h.Server()
    try:
        results = {
            name: asyncio.run(h.measure(make, server.port)) for name, make in CLIENTS.items()
        }
        floor = results["floor (http + orjson)"]
        print(
            f"{'client':<30}{'call p50 us':>12}{'p95 us':>9}{'x floor':>9}"
            f"{'200 conc ms':>13}{'x floor':>9}{'stream ms':>11}{'x floor':>9}"
        )
        for name, r in results.items():
            print(
                f"{name:<30}{r['p50']:>12.0f}{r['p95']:>9.0f}{r['p50'] / floor['p50']:>9.2f}"
                f"{r['conc']:>13.1f}{r['conc'] / floor['conc']:>9.2f}"
                f"{r['stream']:>11.2f}{r['stream'] / floor['stream']:>9.2f}"
            )
        ours = results["PromptLine (http11, default)"]
        ratio = ours["p50"] / floor["p50"]
        print(
            f"PromptLine call vs floor: {ratio:.2f}x (target <= {TARGET_RATIO}x: "
            f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); vs SDK: "
            f"{ours['p50'] / results['openai SDK']['p50']:.2f}x"
        )
        if shutil.which("valgrind"):
            n1, n2 = CALLGRIND_N
            print(f"\ninstructions per call (callgrind, (I({n2})-I({n1}))/{n2 - n1})")
            for name in CLIENTS:
                per = (
                    h.instructions(name, n2, server.port, script=__file__)
                    - h.instructions(name, n1, server.port, script=__file__)
                ) / (n2 - n1)
                print(f"  {name:<30}{per:>14,.0f}")
    finally:
        server.stop()
    imports = {
        "import promptline.models.openai_chat": h.import_ms("import promptline.models.openai_chat"),
        "import openai": h.import_ms("import openai"),
    }
    print()
    for what, ms in imports.items():
        print(f"{what:<40}{ms:>8.0f} ms")
    ms = imports["import promptline.models.openai_chat"]
    print(
        f"provider import target <= {IMPORT_TARGET_MS:.0f} ms: "
        f"{'met' if ms <= IMPORT_TARGET_MS else 'NOT met'}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--work":
        h.work(CLIENTS, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
