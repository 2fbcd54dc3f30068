"""Helpers shared by tests: a local HTTP file server (:mod:`tests.helpers.http_server`) and fixtures
(:mod:`tests.helpers.fixtures`)."""
