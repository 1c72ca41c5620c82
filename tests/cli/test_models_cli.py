"""`promptline models list` and `promptline models test`, offline, on a temporary home."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promptline.cli.main import app
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter
from promptline.storage.database import create_engine

SEED = Path(__file__).parents[1] / "fixtures" / "seed_config.yaml"


def run(*args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def stored_types(home: Path) -> list[str]:
    async def read() -> list[str]:
        store = create_event_store(
            create_engine(f"sqlite+aiosqlite:///{home / 'state.db'}"), owns_engine=True
        )
        try:
            return [event.type for event in await store.read_all(EventFilter())]
        finally:
            await store.close()

    return asyncio.run(read())


def test_models_group_is_in_the_help() -> None:
    assert "models" in run("--help").output
    assert "test" in run("models", "--help").output


def test_models_list_shows_the_catalogue_with_prices_and_the_demo_configured() -> None:
    out = run("models", "list").output

    assert "scripted/demo" in out
    assert "openai/gpt-4o" in out
    assert "$/Mtok in" in out
    assert "yes" in out


def test_models_list_json_marks_the_seed_configured_models() -> None:
    rows = json.loads(run("--config", str(SEED), "models", "list", "--json").output)

    by_id = {row["id"]: row for row in rows}
    assert by_id["openai/gpt-4"]["configured"] is True
    assert by_id["ollama/mistral"]["configured"] is True
    assert by_id["anthropic/claude-sonnet-4-0"]["configured"] is False
    assert by_id["openai/gpt-4"]["input_price_per_mtok"] == 30.0
    assert by_id["scripted/demo"]["supports_vision"] is True


def test_models_test_demo_prints_the_answer_latency_and_usage_and_records_the_call(
    tmp_path: Path,
) -> None:
    out = run("models", "test", "scripted/demo", "--prompt", "ping").output

    assert 'You said: "ping"' in out
    assert "latency" in out
    assert "usage" in out
    assert "cost $0.000000" in out
    assert stored_types(tmp_path / "home") == ["llm_command", "llm_result"]


def test_models_test_stream_prints_deltas_and_ttft_and_records_the_call(tmp_path: Path) -> None:
    out = run("models", "test", "scripted/demo", "--stream").output

    assert "offline demo" in out
    assert "ttft" in out
    assert "ttft -" not in out
    # The deltas were printed as they came; they are live only, the result holds the answer.
    assert stored_types(tmp_path / "home") == ["llm_command", "llm_result"]


def test_models_test_unknown_model_fails_with_a_hint_and_no_traceback() -> None:
    result = run("models", "test", "nowhere/model-x", ok=False)

    assert result.exit_code == 1
    assert "no configured provider serves model 'nowhere/model-x'" in result.output
    assert "hint:" in result.output
    assert "scripted/demo" in result.output


def test_models_test_missing_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIMI_API_KEY", raising=False)

    result = run("--config", str(SEED), "models", "test", "kimi/kimi-9b-exp", ok=False)

    assert result.exit_code == 1
    assert "KIMI_API_KEY" in result.output
