"""Authentication over HTTP: keys, revocation, and the insecure development mode."""

from __future__ import annotations

import time

import httpx
import pytest

from ledger import Settings
from ledger.errors import ConfigurationError
from memledger.http import serving

from http_server import Api, api, open_api  # noqa: F401 - the fixture


def test_a_revoked_key_is_refused_within_two_seconds(api: Api) -> None:
    key = api.key("acme", "analyst")
    key_id = "_".join(key.split("_")[1:3])
    with api.client(key) as http:
        assert http.get("/v1/stats").status_code == 200
        api.system.revoke_key("acme", key_id)
        deadline = time.monotonic() + 3.0
        while http.get("/v1/stats").status_code == 200:
            assert time.monotonic() < deadline, "the revoked key still works after 3 s"
            time.sleep(0.1)
        refused = http.get("/v1/stats")
        assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"


def test_insecure_mode_takes_the_org_from_a_header(settings: Settings) -> None:
    with open_api(settings, insecure_no_auth=True) as api, httpx.Client(base_url=api.url) as http:
        stored = http.post("/v1/memories", json={"content": "dev note"}, headers={"X-Org": "dev", "X-Agent": "me"})
        assert stored.status_code == 201
        api.project(("memories",))
        assert len(http.get("/v1/memories", headers={"X-Org": "dev"}).json()["items"]) == 1
        assert http.get("/v1/memories", headers={"X-Org": "other"}).json()["items"] == []
        assert http.get("/v1/memories").status_code == 401
        assert http.get("/v1/memories", headers={"X-Org": "no spaces"}).status_code == 401


def test_insecure_mode_never_listens_beyond_loopback(settings: Settings) -> None:
    from memledger.http.server import run

    with pytest.raises(ConfigurationError, match="loopback"):
        run(settings, host="0.0.0.0", port=1, insecure_no_auth=True)
    with serving(settings, insecure_no_auth=True) as url:
        assert url.startswith("http://127.0.0.1:")
