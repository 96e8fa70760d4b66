"""Per-key policies at the store level: one budget per rendered key, release and renewal on the
same key as the grant, the busiest-keys set, the CLI, and a real 3-node Redis Cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from stalwart.cli.main import main
from stalwart.dev.embedded import RedisCluster
from stalwart.job.context import Outcome
from stalwart.policies.breakers import Breaker
from stalwart.policies.limits import RENEWER, Concurrency, RateLimit
from stalwart.runtime import Runtime
from stalwart.settings import Settings
from stalwart.store.keys import Keys

pytestmark = pytest.mark.integration
K = Keys("stalwart")
OK = Outcome("succeeded", 0.01)


@pytest.fixture
def runtime(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("STALWART_REDIS_URL", redis_url)
    monkeypatch.delenv("STALWART_PREFIX", raising=False)
    return Runtime(Settings.from_env())


def test_each_rendered_key_is_its_own_budget_released_on_the_same_key(runtime: Runtime, r: redis.Redis) -> None:
    slots = Concurrency("tenant:{tenant_id}", 1, lease=1)
    acme, globex = slots.for_key(tenant_id="acme"), slots.for_key(tenant_id="globex")
    held = acme.acquire(runtime, None)
    assert held.granted
    assert held.key == "tenant:acme"
    assert not acme.acquire(runtime, None).granted  # acme's one slot is taken
    other = globex.acquire(runtime, None)
    assert other.granted  # globex has its own
    assert r.zcard(K.limit("tenant:acme", "holders")) == 1
    # renewal and release reach the key the grant came from
    assert slots.renew(r, K, str(held.token), held.key)
    acme.release(runtime, None, held, OK)
    assert r.zcard(K.limit("tenant:acme", "holders")) == 0
    assert acme.acquire(runtime, None).granted
    assert RENEWER.held() >= 1
    globex.release(runtime, None, other, OK)


def test_rate_keys_do_not_share_a_budget_and_the_busiest_are_listed(
    runtime: Runtime, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    api = RateLimit("api:{account}", "1/s")
    assert api.for_key(account="a").acquire(runtime, None).granted
    denied = api.for_key(account="a").acquire(runtime, None)
    assert not denied.granted
    assert denied.reason == "rate limit api:a"
    assert api.for_key(account="b").acquire(runtime, None).granted
    for _ in range(3):
        api.for_key(account="busy").acquire(runtime, None)
    assert main(["limits", "show", "api:{account}", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["template"] is True
    assert shown["rate"] == "1/s"
    assert [k["name"] for k in shown["keys"]] == ["api:busy", "api:a", "api:b"]
    assert [k["granted"] + k["denied"] for k in shown["keys"]] == [3, 2, 1]
    assert main(["limits", "show", "api:busy", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert (one["name"], one["template"], one["granted"], one["denied"]) == ("api:busy", "api:{account}", 1, 2)
    assert main(["limits", "ls"]) == 0
    out = capsys.readouterr().out
    assert "api:{account}" in out
    assert "1/s burst 1 per key" in out
    assert "api:busy" not in out  # ls lists the template once, not its keys
    assert main(["limits", "show", "api:{account}"]) == 0
    assert "api:busy" in capsys.readouterr().out


def test_key_callable_and_decorator(runtime: Runtime, r: redis.Redis) -> None:
    by_owner = Concurrency("reports", 1, key=lambda owner, **_: owner["id"])
    bound = by_owner.for_key({"id": 7}, size=3)
    assert bound.name == "reports:7"
    limited = RateLimit("fetch:{host}", "1/s")

    @limited
    def fetch(host: str, path: str = "/") -> str:
        return host + path

    with bound.hold(runtime):
        assert r.zcard(K.limit("reports:7", "holders")) == 1
    assert r.zcard(K.limit("reports:7", "holders")) == 0
    assert limited.family == "fetch:{host}"
    assert by_owner.family == "reports:{key()}"
    assert fetch.__name__ == "fetch"


def test_breaker_keys_trip_alone_and_operators_act_on_one_key(
    runtime: Runtime, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    smtp = Breaker("smtp:{provider}", min_calls=2, open_for=30)
    down, up = smtp.for_key(provider="down"), smtp.for_key(provider="up")
    for _ in range(2):
        smtp.release(runtime, None, down.acquire(runtime, None), Outcome("retried", 0.01, ConnectionError("x")))
    denied = down.acquire(runtime, None)
    assert not denied.granted
    assert denied.fallback
    assert up.acquire(runtime, None).granted
    assert main(["breaker", "ls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["smtp:{provider}"]
    assert rows[0]["open_keys"] == 1
    assert main(["breaker", "close", "smtp:down"]) == 0
    assert down.acquire(runtime, None).granted
    capsys.readouterr()
    assert main(["breaker", "open", "smtp:{provider}"]) == 2  # a template is not one breaker
    assert "is a per-key template: name one of its keys" in capsys.readouterr().err
    assert r.zrange(K.registry("breaker_names"), 0, -1) == [b"smtp:{provider}"]


# -- Redis Cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as nodes:
        yield nodes


def test_per_key_policies_on_a_cluster(cluster: RedisCluster, redis_url: str) -> None:
    cluster.client().flushall()
    runtime = Runtime(Settings.from_env({
        "STALWART_REDIS_URL": f"redis+cluster://127.0.0.1:{cluster.servers[0].port}",
        "CELERY_BROKER_URL": redis_url,
    }))
    for name in ("a", "b", "c", "d"):  # keys spread over the slots of the three nodes
        rate = RateLimit("c-api:{account}", "1/s").for_key(account=name)
        assert rate.acquire(runtime, None).granted
        assert not rate.acquire(runtime, None).granted
        slot = Concurrency("c-tenant:{tenant_id}", 1, lease=1).for_key(tenant_id=name)
        held = slot.acquire(runtime, None)
        assert held.granted
        assert not slot.acquire(runtime, None).granted
        slot.release(runtime, None, held, OK)
        brk = Breaker("c-smtp:{provider}", min_calls=1).for_key(provider=name)
        brk.release(runtime, None, brk.acquire(runtime, None), Outcome("retried", 0.01, ConnectionError("x")))
        assert brk.acquire(runtime, None).reason == f"breaker c-smtp:{name} open"
    client = cluster.client()
    assert client.zcard("stalwart:{limit:c-api:<account>}:keys") == 4
    assert client.zcard("stalwart:{breaker:c-smtp:<provider>}:keys") == 4
