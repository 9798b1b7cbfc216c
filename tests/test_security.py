"""Security and access: roles on the API and console, secured connections, secrets kept out of output,
personal data masked, retention deleting old data."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest

from agents.access.audit import AUDIT_STREAM, Audit
from agents.access.tokens import Identity
from agents.alerts.store import ALERT_STREAM, IDX, LABEL_STREAM, AlertNotFound, AlertStore
from agents.embedded.broker import EmbeddedBroker
from agents.embedded.ports import free_port
from agents.embedded.redis_server import EmbeddedRedis
from agents.present.local_time import LocalClock
from settings import Settings
from tests.conftest import ROOT, TEST_SOURCES, WorkerProcess, run, wait_until
from tests.test_worker_integration import _send

ADMIN_TOKEN = "admin-shared-CANARY-7e1"
PLATE = "苏E·00003"  # the city's vehicle gps-0000003
MASKED_PLATE = "苏E·****3"


def warden(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def http(
    port: int, method: str, path: str, token: str | None = None, body: dict | None = None, headers: dict | None = None
) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=orjson.dumps(body) if body is not None else None,
        headers={**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return exc.code, {"error": raw.decode(errors="replace")}


def _token(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return next(line.strip() for line in done.stdout.splitlines() if line.strip().startswith("wdn_"))


def _speeding(entity: str) -> list[dict]:
    """A hazardous-goods vehicle at 150 km/h for 40 s: a speeding episode."""
    t = time.time() - 40
    return [
        {"entity": entity, "ts": t + 10 * i, "lat": 31.2, "lon": 120.5 + 0.004 * i, "speed": 150.0} for i in range(5)
    ]


@pytest.mark.integration
def test_roles_allowed_and_refused_audited_and_personal_data_masked_for_viewers(stack, tmp_path):
    env = stack.env(WARDEN_API_TOKEN=ADMIN_TOKEN)
    city = tmp_path / "city"
    assert warden(env, "refdata", "city", str(city), "--entities", "300").returncode == 0
    assert warden(env, "refdata", "load", str(city)).returncode == 0
    tokens = {
        role: _token(warden(env, "tokens", "create", "--role", role, "--name", f"{role}-li"))
        for role in ("viewer", "operator", "admin")
    }
    again = warden(env, "tokens", "create", "--role", "viewer", "--name", "viewer-li")
    assert again.returncode == 2 and "exists" in again.stdout
    bad_role = warden(env, "tokens", "create", "--role", "root", "--name", "x")
    assert bad_role.returncode == 2 and "unknown role 'root'" in bad_role.stdout
    listed = warden(env, "tokens", "list")
    assert "operator-li" in listed.stdout and not any(t in listed.stdout for t in tokens.values())
    created = orjson.loads(stack.redis.hget("warden:tokens", "operator-li"))["created_at"]
    assert LocalClock("Asia/Shanghai").text(created) in listed.stdout  # the city's time, not UTC
    assert not any(t[4:] in str(stack.redis.hgetall("warden:tokens")) for t in tokens.values())  # only hashes

    worker = stack.start_worker(WARDEN_API_TOKEN=ADMIN_TOKEN)
    port = worker.port
    wait_until(lambda: _ready(port), timeout=90, what="the worker's API")
    fixes = [(b"gps-0000003", orjson.dumps(fix), None) for fix in _speeding("gps-0000003")]
    run(_send(stack.settings.bootstrap_servers, "telemetry.gps", fixes))
    alerts = wait_until(
        lambda: http(port, "GET", "/api/alerts?kind=speeding_hazardous", tokens["viewer"])[1]["alerts"],
        what="the speeding alert",
    )
    aid = alerts[0]["id"]

    # viewer: sees alerts with the plate masked; may not act or administer
    assert alerts[0]["context"]["vehicle"]["plate"] == MASKED_PLATE
    assert http(port, "GET", f"/api/alerts/{aid}", tokens["viewer"])[1]["context"]["vehicle"]["plate"] == MASKED_PLATE
    status, err = http(port, "POST", f"/api/alerts/{aid}/acknowledge", tokens["viewer"], {"note": ""})
    assert status == 403 and err["error"] == "viewer-li has the viewer role; this needs operator"
    for method, path in (
        ("GET", "/api/settings"),
        ("PUT", "/api/refdata"),
        ("POST", "/api/models/rollback"),
        ("GET", "/api/audit"),
    ):
        assert http(port, method, path, tokens["viewer"], {} if method != "GET" else None)[0] == 403

    # operator: sees the plate, acts (as itself), may not administer
    assert http(port, "GET", f"/api/alerts/{aid}", tokens["operator"])[1]["context"]["vehicle"]["plate"] == PLATE
    status, acked = http(
        port, "POST", f"/api/alerts/{aid}/acknowledge", tokens["operator"], {"by": "someone-else", "note": "on it"}
    )
    assert status == 200 and acked["status"] == "acknowledged" and acked["transition"]["by"] == "operator-li"
    status, err = http(port, "GET", "/api/settings", tokens["operator"])
    assert status == 403 and "this needs admin" in err["error"]
    assert http(port, "POST", "/api/models/rollback", tokens["operator"], {"source": "metric"})[0] == 403

    # admin: settings (no secret in them), reference data, models, audit trail
    status, shown = http(port, "GET", "/api/settings", tokens["admin"])
    assert status == 200 and shown["api_token"] == "**********" and ADMIN_TOKEN not in orjson.dumps(shown).decode()
    status, err = http(port, "PUT", "/api/refdata", tokens["admin"], {"sites": [{"id": "s1"}]})
    assert status == 400 and "sites" in err["error"]
    from state.refdata.reference import RefData

    status, loaded = http(port, "PUT", "/api/refdata", tokens["admin"], RefData.load_dir(city).doc)
    assert status == 200 and loaded["counts"]["vehicles"] == 45
    status, err = http(port, "POST", "/api/models/promote", tokens["admin"], {"version": "metric-nope"})
    assert status == 404
    status, trail = http(port, "GET", "/api/audit", tokens["admin"])
    assert status == 200
    done = [(e["who"], e["role"], e["via"], e["action"], e["target"]) for e in trail["entries"]]
    assert ("operator-li", "operator", "api", "alert.acknowledge", aid) in done
    assert ("admin-li", "admin", "api", "refdata.load", f"version {loaded['version']}") in done
    assert {("token.create", f"{r}-li") for r in tokens} <= {(e[3], e[4]) for e in done}
    assert all(e["at"] > time.time() - 300 for e in trail["entries"])

    # the console: a viewer's session cannot act even with its CSRF token; the map masks dwellings
    status, session, cookie = _login(port, tokens["viewer"])
    assert status == 200 and session["role"] == "viewer" and session["who"] == "viewer-li"
    status, err = http(
        port, "POST", f"/api/alerts/{aid}/resolve", body={}, headers={"Cookie": cookie, "X-CSRF-Token": session["csrf"]}
    )
    assert status == 403 and "needs operator" in err["error"]
    sites = http(port, "GET", "/console/map", headers={"Cookie": cookie})[1]["sites"]
    dwellings = [s for s in sites if s["category"] == "dwelling"]
    assert dwellings and all("*" in s["name"] and "*" in s["id"] for s in dwellings)
    status, _op_session, op_cookie = _login(port, tokens["operator"])
    op_sites = http(port, "GET", "/console/map", headers={"Cookie": op_cookie})[1]["sites"]
    assert all("*" not in s["name"] for s in op_sites)

    # revoking a token refuses it at once, and ends the console sessions it opened
    assert warden(env, "tokens", "revoke", "viewer-li").returncode == 0
    assert http(port, "GET", "/api/alerts", tokens["viewer"])[0] == 401
    assert http(port, "GET", "/console/session", headers={"Cookie": cookie})[0] == 401
    assert http(port, "GET", "/console/session", headers={"Cookie": op_cookie})[0] == 200
    trail = warden(env, "audit", "--json")
    actions = [orjson.loads(line)["action"] for line in trail.stdout.splitlines()]
    assert trail.returncode == 0 and actions[0] == "token.revoke" and "alert.acknowledge" in actions

    # the CLI masks personal data unless asked
    shown_cli = warden(env, "alerts", "show", aid)
    assert MASKED_PLATE in shown_cli.stdout and PLATE not in shown_cli.stdout
    assert PLATE in warden(env, "alerts", "show", aid, "--personal").stdout
    logs = worker.log.read_text() + "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert ADMIN_TOKEN not in logs and not any(t in logs for t in tokens.values())


def _ready(port: int) -> bool:
    try:
        return http(port, "GET", "/api/alerts")[0] == 401
    except OSError:
        return False


def _login(port: int, token: str) -> tuple[int, dict, str]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/console/login", method="POST", data=orjson.dumps({"token": token})
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        return resp.status, orjson.loads(resp.read()), cookie


# -- secured connections -----------------------------------------------------------------------------------

REDIS_SECRET = "redis-pw-CANARY-93f"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    return {**env, **extra}


@pytest.mark.integration
def test_worker_and_cli_use_a_redis_password_and_a_wrong_one_fails_clearly(tmp_path):
    secret_file = tmp_path / "redis-password"
    secret_file.write_text(REDIS_SECRET + "\n")
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker, EmbeddedRedis(password=REDIS_SECRET) as redis:
        base = _env(
            WARDEN_BROKER=f"kafka://{broker.bootstrap_servers}",
            WARDEN_REDIS_URL=redis.url,
            WARDEN_EMBEDDED="true",
            WARDEN_PARTITIONS="2",
            WARDEN_DATA_DIR=str(tmp_path / "data"),
            WARDEN_CONNECT_TIMEOUT_S="5",
            WARDEN_SOURCES_DIRS=str(TEST_SOURCES),
        )
        good = {**base, "WARDEN_REDIS_PASSWORD_FILE": str(secret_file)}
        worker = WorkerProcess({**good, "WARDEN_WEB_PORT": str(free_port())}, tmp_path / "worker.log")
        try:
            record = orjson.dumps({"entity": "st-1", "ts": time.time(), "pm25": 300.0})
            run(_send(broker.bootstrap_servers, "telemetry.station", [(b"st-1", record, None)]))
            listed = wait_until(
                lambda: (
                    (out := warden(good, "alerts", "list", "--json")).returncode == 0
                    and "pm25_over_limit" in out.stdout
                    and out
                ),
                what="the alert, through the password",
            )
        finally:
            worker.stop()
        outputs = [listed.stdout + listed.stderr]
        for wrong in ({**base, "WARDEN_REDIS_PASSWORD": "wrong-CANARY-1"}, base):
            done = warden(wrong, "alerts", "list")
            outputs.append(done.stdout + done.stderr)
            assert done.returncode == 2 and "Traceback" not in outputs[-1]
            assert "refused the login of user 'default'" in done.stdout and "WARDEN_REDIS_PASSWORD" in done.stdout
        started = time.monotonic()
        refused = WorkerProcess(
            {**base, "WARDEN_REDIS_PASSWORD": "wrong-CANARY-2", "WARDEN_WEB_PORT": str(free_port())},
            tmp_path / "refused.log",
        )
        assert refused.proc.wait(60) == 2 and time.monotonic() - started < 60
        outputs.append(refused.log.read_text())
        assert "refused the login" in outputs[-1] and "Traceback" not in outputs[-1]
        outputs.append(worker.log.read_text())
    everything = "\n".join(outputs)
    assert REDIS_SECRET not in everything and "wrong-CANARY" not in everything


@pytest.mark.integration
def test_a_broker_requiring_sasl_refuses_clearly(tmp_path):
    with EmbeddedBroker(authentication=True, log_path=tmp_path / "broker.log") as broker, EmbeddedRedis() as redis:
        base = _env(
            WARDEN_BROKER=f"kafka://{broker.bootstrap_servers}",
            WARDEN_REDIS_URL=redis.url,
            WARDEN_DATA_DIR=str(tmp_path / "data"),
            WARDEN_CONNECT_TIMEOUT_S="5",
            WARDEN_WEB_PORT=str(free_port()),
        )
        plain = warden(base, "worker")
        assert plain.returncode == 2 and "set WARDEN_KAFKA_SECURITY_PROTOCOL" in plain.stdout
        scram = warden(
            {
                **base,
                "WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "WARDEN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "WARDEN_KAFKA_SASL_USERNAME": "warden",
                "WARDEN_KAFKA_SASL_PASSWORD": "sasl-CANARY-55",
            },
            "worker",
        )
        assert scram.returncode == 2
        assert "refused the SASL login of user 'warden' (SCRAM-SHA-512)" in scram.stdout
        for done in (plain, scram):
            assert "Traceback" not in done.stdout + done.stderr and "sasl-CANARY" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "settings, says",
    [
        (
            {"WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "WARDEN_KAFKA_SASL_USERNAME: required by WARDEN_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {"WARDEN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-1"},
            "WARDEN_KAFKA_SASL_MECHANISM: Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'",
        ),
        (
            {"WARDEN_KAFKA_SECURITY_PROTOCOL": "SSL", "WARDEN_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "WARDEN_KAFKA_SSL_CAFILE: no readable file at /nonexistent/ca.pem",
        ),
        (
            {"WARDEN_KAFKA_SSL_CAFILE": "/etc/hostname"},
            "WARDEN_KAFKA_SSL_CAFILE: set, but WARDEN_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS",
        ),
        (
            {"WARDEN_REDIS_PASSWORD": "x-CANARY", "WARDEN_REDIS_PASSWORD_FILE": "/etc/hostname"},
            "WARDEN_REDIS_PASSWORD and WARDEN_REDIS_PASSWORD_FILE: set one, not both",
        ),
        (
            {"WARDEN_REDIS_URL": "redis://:x-CANARY@127.0.0.1:1/0", "WARDEN_REDIS_PASSWORD": "y-CANARY"},
            "WARDEN_REDIS_URL holds a password and WARDEN_REDIS_PASSWORD(_FILE) is set too",
        ),
        (
            {"WARDEN_REDIS_URL": "redis://127.0.0.1:6379/0", "WARDEN_REDIS_SSL_CAFILE": "/etc/hostname"},
            "WARDEN_REDIS_SSL_CAFILE: set, but WARDEN_REDIS_URL does not use TLS (rediss://)",
        ),
        (
            {"WARDEN_KAFKA_SECURITY_PROTOCOL": "SSL", "WARDEN_KAFKA_SSL_CERTFILE": "/etc/hostname"},
            "WARDEN_KAFKA_SSL_CERTFILE and WARDEN_KAFKA_SSL_KEYFILE: a client certificate needs both",
        ),
        (
            {
                "WARDEN_KAFKA_SECURITY_PROTOCOL": "SSL",
                "WARDEN_KAFKA_SSL_CAFILE": "/etc/hostname",
                "WARDEN_BROKER": "kafka://127.0.0.1:1",
                "WARDEN_KAFKA_SASL_PASSWORD": "unused-CANARY",
            },
            "WARDEN_KAFKA_SSL_CAFILE / _CERTFILE / _KEYFILE (/ _KEY_PASSWORD): cannot load them",
        ),
        (
            {"WARDEN_REDIS_URL": "redis://:url-CANARY@127.0.0.1:1/0", "WARDEN_CONNECT_TIMEOUT_S": "2"},
            "Redis at redis://:***@127.0.0.1:1/0: cannot connect (WARDEN_REDIS_URL)",
        ),
    ],
)
def test_a_wrong_setting_fails_at_start_naming_it_without_secrets(settings, says):
    args = ("worker",) if "WARDEN_BROKER" in settings else ("alerts", "list")
    done = warden(_env(**settings), *args, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert says in " ".join(out.split()), out
    assert "Traceback" not in out and "CANARY" not in out


def test_tls_and_sasl_settings_reach_every_kafka_client(tmp_path):
    """The options our clients and Faust get (TLS served by a real broker is beyond the embedded Tansu 0.6)."""
    from agents.worker.transport import credentials
    from streams.kafka.client import kafka_options

    (tmp_path / "pw").write_text("sasl-secret\n")
    s = Settings(
        broker="kafka://k1:9093,kafka://k2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="warden",
        kafka_sasl_password_file=tmp_path / "pw",
    )
    options = kafka_options(s)
    assert options["bootstrap_servers"] == "k1:9093,k2:9093" and options["sasl_plain_password"] == "sasl-secret"
    assert options["security_protocol"] == "SASL_SSL" and options["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    faust_side = credentials(s)
    assert (faust_side.protocol.value, faust_side.mechanism.value, faust_side.username) == (
        "SASL_SSL",
        "SCRAM-SHA-256",
        "warden",
    ) and "sasl-secret" not in repr(faust_side)
    assert "sasl-secret" not in repr(s) and "sasl-secret" not in str(s.model_dump())


# -- personal data -----------------------------------------------------------------------------------------


def test_logs_mask_plates():
    code = (
        "import logging; from streams.privacy import mask_logs; logging.basicConfig(); mask_logs(); "
        f"logging.getLogger('warden.x').warning('vehicle %s stopped at %s', '{PLATE}', 'gate 3')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert f"vehicle {MASKED_PLATE} stopped at gate 3" in done.stderr and PLATE not in done.stderr


def test_replay_exports_mask_personal_data_unless_asked(tmp_path):
    env = _env(WARDEN_DATA_DIR=str(tmp_path / "data"))
    city = tmp_path / "city"
    assert warden(env, "refdata", "city", str(city), "--entities", "300").returncode == 0
    records = tmp_path / "gps.ndjson"
    records.write_bytes(b"".join(orjson.dumps({"source": "gps", **fix}) + b"\n" for fix in _speeding("gps-0000003")))
    for flags, plate in (((), MASKED_PLATE), (("--personal",), PLATE)):
        out = tmp_path / f"alerts{len(flags)}.ndjson"
        done = warden(env, "replay", "--refdata", str(city), "--alerts-out", str(out), str(records), *flags)
        assert done.returncode == 0, done.stdout + done.stderr
        alerts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        assert "speeding_hazardous" in {a["kind"] for a in alerts}
        assert {a["context"]["vehicle"]["plate"] for a in alerts} == {plate}


# -- retention -----------------------------------------------------------------------------------------------


def test_alert_store_and_audit_retention_delete_old_data():
    from agents.alerts.manager import AlertManager
    from models.incidents import QuietPeriods
    from state.refdata.store import RefCache
    from tests.test_alerts import _signal

    with EmbeddedRedis() as server:

        async def scenario():
            import redis.asyncio as aioredis

            r = aioredis.Redis.from_url(server.url)
            settings = Settings(alert_retention_s=2, audit_retention_s=2)
            store, audit = AlertStore(r, settings), Audit(r, settings)
            cache = RefCache(r)
            await cache.refresh()
            (alert,) = await AlertManager(store, cache, QuietPeriods({"*": 3600.0})).handle(
                [_signal("st-9", time.time())]
            )
            await store.transition(alert.id, "resolve", "li")
            await audit.record(Identity("li", "operator"), "alert.resolve", alert.id, "api")
            assert (await store.get(alert.id))["status"] == "resolved"
            await asyncio.sleep(3.2)
            await audit.record(Identity("li", "operator"), "alert.resolve", "later", "api")  # trims the old one
            with pytest.raises(AlertNotFound):
                await store.get(alert.id)
            assert await store.list() == [] and await store.trim() > 0
            assert [k async for k in r.scan_iter(match=IDX.format("*"))] == []
            assert await r.xlen(ALERT_STREAM) == 0 and await r.xlen(LABEL_STREAM) == 0
            assert [e["target"] for e in await audit.recent()] == ["later"] and await r.xlen(AUDIT_STREAM) == 1
            assert [k async for k in r.scan_iter(match=f"warden:alert:{alert.id}*")] == []
            await r.aclose()

        asyncio.run(scenario())


def test_the_embedded_redis_answers_only_the_processes_it_serves(tmp_path):
    """A random password, in the URL handed to the stack's processes and in an owner-only env file: another
    local user (no password) cannot read or write it, so cannot add a token hash and become admin."""
    import stat
    import urllib.parse

    import redis as sync_redis

    from agents.embedded.stack import child_env, embedded_stack, write_env_file

    with embedded_stack(Settings(data_dir=tmp_path, broker="kafka://127.0.0.1:1")) as live:
        parts = urllib.parse.urlsplit(live.redis_url)
        with pytest.raises(sync_redis.exceptions.AuthenticationError):
            sync_redis.Redis(host=parts.hostname, port=parts.port).set("warden:token:forged", "admin")
        assert sync_redis.Redis.from_url(live.redis_url).ping()
        assert len(parts.password) >= 24 and parts.password not in live.redis_display_url
        env_file = write_env_file(live, tmp_path / "embedded.env")
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert f"WARDEN_REDIS_URL='{live.redis_url}'" in env_file.read_text()
        assert child_env(live)["WARDEN_REDIS_URL"] == live.redis_url
