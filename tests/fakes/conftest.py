"""Makes the fake-server fixtures available to the tests of the fakes themselves."""

from fakes.openai_fixtures import openai_fake, openai_fake_server

__all__ = ["openai_fake", "openai_fake_server"]
