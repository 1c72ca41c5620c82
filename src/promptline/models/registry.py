"""Providers built from the ``models`` settings, model ids resolved to them, and the catalogue
of what each model can do and costs (built-in values, config overrides on top)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptline.config.home import promptline_home
from promptline.config.settings import ProviderSettings, ProviderType, Settings
from promptline.core.errors import ModelNotFoundError, ProviderAuthError
from promptline.models.capabilities import ModelCapabilities
from promptline.models.scripted import (
    DEMO_SCRIPT,
    SCRIPTED_CAPABILITIES,
    Script,
    ScriptedProvider,
    load_scripts_dir,
)
from promptline.models.transport import Timeouts

if TYPE_CHECKING:
    from promptline.models.provider import ModelProvider
    from promptline.models.transport import HttpTransport

__all__ = [
    "SCRIPTED",
    "CatalogueEntry",
    "ProviderRegistry",
    "ResolvedModel",
    "infer_provider_type",
]

SCRIPTED = "scripted"
"""Name of the scripted provider that is always there, configured or not."""


def infer_provider_type(name: str, configured: ProviderType | None = None) -> ProviderType:
    """The wire format of a provider: ``configured`` when given, else guessed from the name
    (anthropic/claude, gemini/google, scripted; anything else is OpenAI-compatible)."""
    if configured is not None:
        return configured
    lowered = name.lower()
    if "anthropic" in lowered or "claude" in lowered:
        return "anthropic"
    if "gemini" in lowered or "google" in lowered:
        return "gemini"
    if lowered.startswith(SCRIPTED):
        return "scripted"
    return "openai"


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model id taken apart: the configured provider name and the bare model name."""

    provider: str
    model: str

    @property
    def id(self) -> str:
        """``provider/model``."""
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One row of the catalogue: a model id, what it can do and cost, and whether it can be
    used as configured (its provider is configured and lists it, or lists no models)."""

    id: str
    capabilities: ModelCapabilities
    configured: bool


class ProviderRegistry:
    """Builds each configured provider on first use and resolves model ids to them.

    A ``scripted`` provider (with the built-in ``demo`` script) is always present, so
    ``scripted/demo`` works offline with no configuration. A missing API key is reported
    when its provider is first used, not before: one config may list providers a machine
    has no keys for. Providers share one HTTP transport, made on demand unless given.
    """

    def __init__(self, settings: Settings, *, transport: HttpTransport | None = None) -> None:
        """Read ``settings.models``; nothing is built or connected yet."""
        self._settings = settings
        self._config: dict[str, ProviderSettings] = dict(settings.models.providers)
        self._config.setdefault(SCRIPTED, ProviderSettings(type="scripted"))
        self._transport = transport
        self._owns_transport = False
        self._providers: dict[str, ModelProvider] = {}
        self._scripts: dict[str, dict[str, Script]] = {}

    @property
    def names(self) -> list[str]:
        """Configured provider names (``scripted`` included), in config order."""
        return list(self._config)

    def settings_of(self, name: str) -> ProviderSettings:
        """The settings of provider ``name``; `ModelNotFoundError` when it is not configured."""
        config = self._config.get(name)
        if config is None:
            raise ModelNotFoundError(
                f"provider {name!r} is not configured",
                hint=f"configured providers: {', '.join(self._config)}; add "
                f"models.providers.{name} to the config",
                provider=name,
            )
        return config

    def type_of(self, name: str) -> ProviderType:
        """The wire format provider ``name`` speaks."""
        return infer_provider_type(name, self.settings_of(name).type)

    def timeouts_of(self, name: str) -> Timeouts:
        """The time limits of provider ``name``'s calls, from its settings."""
        config = self.settings_of(name)
        return Timeouts(
            connect=config.connect_timeout_secs,
            first_byte=config.first_byte_timeout_secs,
            total=config.timeout_secs,
        )

    def models_of(self, name: str) -> list[str]:
        """The model names provider ``name`` lists (a scripted provider: its scripts)."""
        if self.type_of(name) == "scripted":
            return sorted(self.scripts(name))
        return list(self.settings_of(name).models)

    # -- model ids ----------------------------------------------------------------------------

    def resolve(self, model: str | None = None) -> ResolvedModel:
        """Take a model id apart: ``provider/model``; or a bare name, served by the first
        provider that lists it; or None for ``models.default``. `ModelNotFoundError`, listing
        what exists, when nothing matches."""
        if not model:
            default = self._settings.models.default
            if not default:
                raise ModelNotFoundError(
                    "no model was given and models.default is not set",
                    hint="name a model such as scripted/demo, or set models.default",
                )
            model = default
        prefix, slash, rest = model.partition("/")
        if slash and prefix in self._config:
            if not rest:
                raise ModelNotFoundError(
                    f"model id {model!r} names no model",
                    hint=f"write {prefix}/<model>, e.g. {prefix}/{self._example(prefix)}",
                    model=model,
                )
            if self.type_of(prefix) == "scripted" and rest not in self.scripts(prefix):
                raise ModelNotFoundError(
                    f"{prefix} has no script {rest!r}",
                    hint=f"scripts: {', '.join(self.models_of(prefix))}; add {rest}.yaml to "
                    f"the scripts folder (models.providers.{prefix}.scripts_dir)",
                    model=model,
                    provider=prefix,
                )
            return ResolvedModel(prefix, rest)
        # A bare name, or one with a slash of its own (``meta-llama/Llama-3-8B`` on vLLM).
        for name, config in self._config.items():
            if model in config.models:
                return ResolvedModel(name, model)
        listed = [f"{n}/{m}" for n in self._config for m in self.models_of(n)]
        raise ModelNotFoundError(
            f"no configured provider serves model {model!r}",
            hint=(
                f"write provider/model with a configured provider ({', '.join(self._config)}), "
                "or add the model to models.providers.<name>.models; models: " + ", ".join(listed)
            ),
            model=model,
        )

    # -- providers ----------------------------------------------------------------------------

    def provider(self, name: str, *, model: str | None = None) -> ModelProvider:
        """The provider called ``name``, built on first use. ``model`` only makes errors
        name it: `ProviderAuthError` when the provider needs an API key it lacks."""
        built = self._providers.get(name)
        if built is None:
            built = self._build(name, model)
            self._providers[name] = built
        return built

    def provider_for(self, model: str | None = None) -> tuple[ModelProvider, ResolvedModel]:
        """Resolve ``model`` and return its provider with the resolved id (pass
        ``resolved.model``, the bare name, to the provider)."""
        resolved = self.resolve(model)
        return self.provider(resolved.provider, model=resolved.model), resolved

    def scripts(self, name: str = SCRIPTED) -> dict[str, Script]:
        """The scripts of scripted provider ``name``: ``demo``, then the files of its
        ``scripts_dir`` (default ``<home>/scripts`` when that folder exists)."""
        scripts = self._scripts.get(name)
        if scripts is None:
            scripts = {DEMO_SCRIPT.name: DEMO_SCRIPT}
            folder = self.settings_of(name).scripts_dir
            if folder is not None:
                scripts.update(load_scripts_dir(folder))
            elif (promptline_home() / "scripts").is_dir():
                scripts.update(load_scripts_dir(promptline_home() / "scripts"))
            self._scripts[name] = scripts
        return scripts

    async def aclose(self) -> None:
        """Close every provider built, and the transport if this registry made it."""
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            await provider.aclose()
        if self._owns_transport and self._transport is not None:
            await self._transport.aclose()
            self._transport = None
            self._owns_transport = False

    def _build(self, name: str, model: str | None) -> ModelProvider:
        config = self.settings_of(name)
        kind = self.type_of(name)
        if kind == "scripted":
            return ScriptedProvider(name, scripts=self.scripts(name))
        api_key = self._api_key(name, config, kind, model)
        timeout = self.timeouts_of(name)
        transport = self._http()
        if kind == "anthropic":
            from promptline.models.anthropic import DEFAULT_BASE_URL, AnthropicProvider

            return AnthropicProvider(
                name,
                api_key=api_key,
                transport=transport,
                base_url=config.base_url or DEFAULT_BASE_URL,
                timeout=timeout,
            )
        if kind == "gemini":
            from promptline.models.gemini import DEFAULT_BASE_URL as GEMINI_URL
            from promptline.models.gemini import GeminiProvider

            return GeminiProvider(
                name,
                api_key=api_key,
                transport=transport,
                base_url=config.base_url or GEMINI_URL,
                timeout=timeout,
            )
        from promptline.models.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider.for_endpoint(
            name, transport=transport, api_key=api_key, base_url=config.base_url, timeout=timeout
        )

    def _api_key(
        self, name: str, config: ProviderSettings, kind: ProviderType, model: str | None
    ) -> str | None:
        if config.api_key:
            return config.api_key
        key = f"models.providers.{name}.api_key"
        var = self._settings.unresolved.get(key)
        if var is not None:
            raise ProviderAuthError(
                f"no API key: {key} needs environment variable {var}, which is not set",
                provider=name,
                model=model,
                hint=f"export {var}=<your key> and try again, or use another model",
                env_var=var,
            )
        if kind == "openai":
            from promptline.models.openai_chat import KEYLESS_PROVIDERS

            # A local server, or any endpoint given by URL, may take requests without a key.
            if name in KEYLESS_PROVIDERS or config.base_url is not None:
                return None
        suggested = f"{name.upper().replace('-', '_')}_API_KEY"
        raise ProviderAuthError(
            f"no API key configured ({key} is not set)",
            provider=name,
            model=model,
            hint=f'set {key}: "${{{suggested}}}" in the config and export {suggested}',
        )

    def _http(self) -> HttpTransport:
        if self._transport is None:
            if self._settings.models.transport == "aiohttp":
                from promptline.models.http import SharedHttpTransport

                self._transport = SharedHttpTransport()
            else:
                from promptline.models.http11 import Http11Transport

                self._transport = Http11Transport()
            self._owns_transport = True
        return self._transport

    def _example(self, name: str) -> str:
        models = self.models_of(name)
        return models[0] if models else "model"

    # -- catalogue ----------------------------------------------------------------------------

    def capabilities(self, model_id: str) -> ModelCapabilities:
        """What ``provider/model`` can do and costs, with ``models.catalogue`` overrides on top.

        The built-in entry is looked up by the id; else, for a provider relaying another's
        models (``openrouter/openai/gpt-4o``), by the part after the provider; else by the bare
        model name when one entry has it. A scripted model is free and accepts everything. A
        model nobody knows gets the catalogue's cautious defaults with unknown prices (free on
        a local provider).
        """
        from promptline.models import catalogue

        provider, _, model = model_id.partition("/")
        base: ModelCapabilities
        if provider in self._config and self.type_of(provider) == "scripted":
            base = SCRIPTED_CAPABILITIES
        elif model_id in catalogue.BUILTIN_CATALOGUE:
            base = catalogue.BUILTIN_CATALOGUE[model_id]
        elif "/" in model and model in catalogue.BUILTIN_CATALOGUE:
            base = catalogue.BUILTIN_CATALOGUE[model]
        else:
            bare = catalogue.lookup(model) if model and "/" not in model else None
            known = bare is not None and bare is not catalogue.UNKNOWN_MODEL
            base = bare if bare is not None and known else catalogue.lookup(model_id)
        override = self._settings.models.catalogue.get(model_id)
        if override is None:
            return base
        return base.with_overrides(override.model_dump(exclude_none=True))

    def catalogue(self) -> list[CatalogueEntry]:
        """Every model known: built in, overridden in config, listed by a configured provider,
        or scripted; sorted by id."""
        ids = set(_builtin_ids()) | set(self._settings.models.catalogue)
        for name in self._config:
            ids.update(f"{name}/{model}" for model in self.models_of(name))
        entries = []
        for model_id in sorted(ids):
            caps = self.capabilities(model_id)
            entries.append(CatalogueEntry(model_id, caps, self._is_configured(model_id)))
        return entries

    def _is_configured(self, model_id: str) -> bool:
        provider, _, model = model_id.partition("/")
        if provider not in self._config:
            return False
        models = self.models_of(provider)
        return not models or model in models


def _builtin_ids() -> list[str]:
    from promptline.models import catalogue

    return list(catalogue.BUILTIN_CATALOGUE)
