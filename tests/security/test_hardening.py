"""Hardening of the security layer: throttled failed authentications, no user enumeration by timing, TLS,
and passwords or API key secrets never coming back out of the server."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
import os
import re
import signal
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import elasticsearch8
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import assert_es_error
from tests.support.sample_service import SampleService
from tests.support.servers import PASSWORD, RunningServer, ThreadedServer, free_port

CHALLENGES = ['Basic realm="security", charset="UTF-8"', "ApiKey"]
ANONYMOUS_NOT_ALLOWED = (
    "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
)
TOO_MANY = re.compile(
    r"too many failed authentication attempts for (?P<who>.+) from \[127\.0\.0\.1\]; try again in \[(?P<wait>\d+)s\]"
)
TLS_TOGETHER = "ssl_certfile and ssl_keyfile must be given together"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def api_key(encoded: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {encoded}"}


def encode_key(key_id: str, secret: str) -> str:
    return base64.b64encode(f"{key_id}:{secret}".encode()).decode()


AUTHENTICATE = "/_security/_authenticate"  # allowed for every authenticated user, whatever their roles


def as_user(client: httpx.Client, user: str, password: str, path: str = AUTHENTICATE) -> httpx.Response:
    return client.get(path, headers=basic(user, password))


def put_user(admin: httpx.Client, username: str, password: str, roles: list[str] | None = None) -> None:
    response = admin.put(f"/_security/user/{username}", json={"password": password, "roles": roles or []})
    assert response.status_code == 200, response.text
    assert response.json() == {"created": True}


def create_api_key(client: httpx.Client, name: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post("/_security/api_key", json={"name": name}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_wrong_password(response: httpx.Response, user: str, uri: str = AUTHENTICATE) -> None:
    assert_es_error(
        response, 401, "security_exception", f"unable to authenticate user [{user}] for REST request [{uri}]"
    )
    assert response.headers.get_list("www-authenticate") == CHALLENGES


def assert_throttled(response: httpx.Response, who: str, window_s: int) -> int:
    """The throttle's 401: its reason names the caller and the wait, which `Retry-After` repeats."""
    error = assert_es_error(response, 401, "security_exception")
    match = TOO_MANY.fullmatch(error["reason"])
    assert match is not None, error["reason"]
    assert match["who"] == who, error["reason"]
    wait = int(match["wait"])
    assert 1 <= wait <= window_s, error["reason"]
    assert response.headers["retry-after"] == str(wait)
    assert response.headers.get_list("www-authenticate") == CHALLENGES
    assert "x-elastic-product" not in response.headers
    return wait


# -- throttling of failed authentications ----------------------------------------------------------


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[RunningServer]:
    """3 failures per user and address, 5 per address, per minute."""
    with ThreadedServer(
        tmp_path / "data", auth_failures_per_user_and_address="3/minute", auth_failures_per_address="5/minute"
    ) as running:
        yield running


def test_failed_logins_of_one_user_block_even_the_right_password(throttled: RunningServer) -> None:
    with throttled.http() as admin, throttled.http(auth=None) as anon:
        put_user(admin, "alice", "alice-password")
        for attempt in range(3):
            assert_wrong_password(as_user(anon, "alice", f"wrong-{attempt}"), "alice")
        assert_throttled(as_user(anon, "alice", "alice-password"), "user [alice]", 60)
        # Still blocked: another wrong password is refused by the throttle, not checked.
        assert_throttled(as_user(anon, "alice", "wrong-again"), "user [alice]", 60)
        # Other users from the same address are below the per-address limit.
        assert admin.get("/").status_code == 200
        assert as_user(anon, "elastic", PASSWORD).status_code == 200


def test_per_user_limit_spares_other_users_but_the_per_address_limit_does_not(throttled: RunningServer) -> None:
    with throttled.http() as admin, throttled.http(auth=None) as anon:
        for name in ("alice", "bob", "carol"):
            put_user(admin, name, f"{name}-password")
        for attempt in range(3):
            assert_wrong_password(as_user(anon, "alice", f"wrong-{attempt}"), "alice")
        assert_throttled(as_user(anon, "alice", "alice-password"), "user [alice]", 60)
        # bob is not blocked by alice's failures: 3 failures from this address, the address allows 5.
        assert as_user(anon, "bob", "bob-password").status_code == 200
        for attempt in range(2):
            assert_wrong_password(as_user(anon, "bob", f"wrong-{attempt}"), "bob")
        # 5 failures from 127.0.0.1: now every user is refused from here, even one without failures.
        assert_throttled(as_user(anon, "carol", "carol-password"), "user [carol]", 60)
        assert_throttled(as_user(anon, "bob", "bob-password"), "user [bob]", 60)
        assert_throttled(as_user(anon, "elastic", PASSWORD), "user [elastic]", 60)


def test_unknown_users_count_against_the_address(throttled: RunningServer) -> None:
    with throttled.http() as admin, throttled.http(auth=None) as anon:
        put_user(admin, "carol", "carol-password")
        for i in range(5):
            assert_wrong_password(as_user(anon, f"nobody-{i}", "guess"), f"nobody-{i}")
        assert_throttled(as_user(anon, "carol", "carol-password"), "user [carol]", 60)


def test_successful_logins_do_not_count(throttled: RunningServer) -> None:
    with throttled.http() as admin, throttled.http(auth=None) as anon:
        put_user(admin, "alice", "alice-password")
        for _ in range(8):
            assert as_user(anon, "alice", "alice-password").status_code == 200
        for attempt in range(2):
            assert_wrong_password(as_user(anon, "alice", f"wrong-{attempt}"), "alice")
        # 2 failures (and 8 successes) are below the limit of 3.
        assert as_user(anon, "alice", "alice-password").status_code == 200
        assert_wrong_password(as_user(anon, "alice", "wrong-2"), "alice")
        assert_throttled(as_user(anon, "alice", "alice-password"), "user [alice]", 60)


def test_api_keys_with_a_wrong_secret_are_throttled_per_key_id(tmp_path: Path) -> None:
    with (
        ThreadedServer(
            tmp_path / "data", auth_failures_per_user_and_address="3/minute", auth_failures_per_address="100/minute"
        ) as running,
        running.http() as admin,
        running.http(auth=None) as anon,
    ):
        first, second = create_api_key(admin, "first"), create_api_key(admin, "second")
        for attempt in range(3):
            response = anon.get("/", headers=api_key(encode_key(first["id"], f"wrong-secret-{attempt}")))
            error = assert_es_error(response, 401, "security_exception", ANONYMOUS_NOT_ALLOWED)
            assert (
                error["additional_unsuccessful_credentials"]
                == f"API key: invalid credentials for API key [{first['id']}]"
            )
        blocked = anon.get("/", headers=api_key(first["encoded"]))
        error = assert_es_error(blocked, 401, "security_exception")
        match = TOO_MANY.fullmatch(error["reason"])
        assert match is not None, error["reason"]
        assert first["id"] in match["who"], error["reason"]
        assert blocked.headers["retry-after"] == match["wait"]
        # Another key of the same owner, and the owner's password, are not blocked.
        assert anon.get("/", headers=api_key(second["encoded"])).status_code == 200
        assert admin.get("/").status_code == 200


def test_the_block_lifts_once_the_failures_leave_the_window(tmp_path: Path) -> None:
    with (
        ThreadedServer(
            tmp_path / "data", auth_failures_per_user_and_address="2/3 seconds", auth_failures_per_address="100/minute"
        ) as running,
        running.http() as admin,
        running.http(auth=None) as anon,
    ):
        put_user(admin, "alice", "alice-password")
        for attempt in range(2):
            assert_wrong_password(as_user(anon, "alice", f"wrong-{attempt}"), "alice")
        wait = assert_throttled(as_user(anon, "alice", "alice-password"), "user [alice]", 3)
        time.sleep(wait + 0.3)
        assert as_user(anon, "alice", "alice-password").status_code == 200


# -- no user enumeration by timing -------------------------------------------------------------------

SAMPLES = 15


def median_times(client: httpx.Client, attempts: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Median seconds of a 401 for each kind of attempt, sampled interleaved so load affects all alike."""
    samples: dict[str, list[float]] = {kind: [] for kind in attempts}
    for user, password in attempts.values():  # warm-up
        assert as_user(client, user, password).status_code == 401
    for _ in range(SAMPLES):
        for kind, (user, password) in attempts.items():
            start = time.perf_counter()
            response = as_user(client, user, password)
            samples[kind].append(time.perf_counter() - start)
            assert response.status_code == 401, response.text
    return {kind: statistics.median(times) for kind, times in samples.items()}


def test_unknown_users_take_about_as_long_as_wrong_passwords(tmp_path: Path) -> None:
    with ThreadedServer(tmp_path / "data") as running, running.http() as admin, running.http(auth=None) as anon:
        put_user(admin, "existing", "the-right-password")
        medians = median_times(
            anon, {"wrong_password": ("existing", "not-the-password"), "unknown_user": ("no-such-user", "whatever")}
        )
    assert medians["unknown_user"] > 0.3 * medians["wrong_password"], medians
    assert medians["wrong_password"] > 0.3 * medians["unknown_user"], medians


def test_wrong_password_of_a_recently_authenticated_user_takes_as_long_as_an_unknown_user(tmp_path: Path) -> None:
    """A cached successful login must not make wrong passwords fast: that would tell active users apart."""
    with ThreadedServer(tmp_path / "data") as running, running.http() as admin, running.http(auth=None) as anon:
        put_user(admin, "active", "the-right-password")
        assert as_user(anon, "active", "the-right-password").status_code == 200
        medians = median_times(
            anon, {"wrong_password": ("active", "not-the-password"), "unknown_user": ("no-such-user", "whatever")}
        )
    assert medians["wrong_password"] > 0.3 * medians["unknown_user"], medians
    assert medians["unknown_user"] > 0.3 * medians["wrong_password"], medians


# -- TLS ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (CN and IP SAN) and its key, as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(key_id, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def https_url(running: RunningServer) -> str:
    assert running.url.startswith("http://127.0.0.1:")
    return "https://" + running.url.removeprefix("http://")


def config(api_key_value: str = "sk-tls") -> dict[str, Any]:
    return {"service": "test_service", "service_settings": {"model": "m-tls", "api_key": api_key_value}}


def test_threaded_server_speaks_https_to_httpx(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    with ThreadedServer(
        tmp_path / "data", extra_services=[SampleService], ssl_certfile=cert, ssl_keyfile=key
    ) as running:
        url = https_url(running)
        with httpx.Client(base_url=url, verify=trusting(cert), auth=("elastic", PASSWORD), timeout=30) as client:
            info = client.get("/")
            assert info.status_code == 200, info.text
            assert info.json()["tagline"] == "You Know, for Search"
            assert info.headers["x-elastic-product"] == "Elasticsearch"
            put = client.put("/_inference/text_embedding/tls-httpx", json=config())
            assert put.status_code == 200, put.text
            got = client.get("/_inference/tls-httpx")
            assert got.status_code == 200, got.text
            assert got.json()["endpoints"] == [put.json()]
            # Security still applies over TLS.
            assert_es_error(
                client.get("/", auth=("elastic", "not-the-password")),
                401,
                "security_exception",
                "unable to authenticate user [elastic] for REST request [/]",
            )
        # Plain HTTP on the TLS port gets no HTTP answer.
        with pytest.raises(httpx.TransportError):
            httpx.get(running.url + "/", auth=("elastic", PASSWORD), timeout=5)
        # HTTPS without trusting the self-signed certificate fails verification.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url + "/", auth=("elastic", PASSWORD), timeout=5)


@pytest.mark.parametrize("client_module", [elasticsearch, elasticsearch8], ids=["es9", "es8"])
def test_official_client_over_https_with_ca_certs(
    tmp_path: Path, tls_files: tuple[Path, Path], client_module: Any
) -> None:
    cert, key = tls_files
    with ThreadedServer(
        tmp_path / "data", extra_services=[SampleService], ssl_certfile=cert, ssl_keyfile=key
    ) as running:
        client = client_module.Elasticsearch(
            https_url(running), ca_certs=str(cert), basic_auth=("elastic", PASSWORD), request_timeout=30
        )
        try:
            info = client.info()
            assert info["tagline"] == "You Know, for Search"
            created = client.inference.put(
                inference_id="tls-client", task_type="text_embedding", inference_config=config()
            )
            assert created["inference_id"] == "tls-client"
            assert "api_key" not in created["service_settings"]
            got = client.inference.get(inference_id="tls-client")
            assert got["endpoints"] == [created.body]
            result = client.inference.inference(inference_id="tls-client", input="over tls")
            assert len(result["text_embedding"][0]["embedding"]) == 8
        finally:
            client.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERD_") and k != "ELASTIC_PASSWORD"}
    return {**env, **extra}


def test_serve_with_tls_flags_serves_https(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "inferd", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            [*cmd, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
            env=clean_env(ELASTIC_PASSWORD=PASSWORD),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"inferd serve exited early: {log_path.read_text()}"
            try:
                response = httpx.get(url + "/", verify=trusting(cert), auth=("elastic", PASSWORD), timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"no HTTPS answer on {url}: {log_path.read_text()}"
                time.sleep(0.1)
        assert response.status_code == 200, response.text
        assert response.json()["tagline"] == "You Know, for Search"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", auth=("elastic", PASSWORD), timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def serve_with_one_tls_file(data_dir: Path, flag: str, path: Path, elastic_password: str) -> tuple[int, str]:
    """`inferd serve` given only one of the two TLS files; its exit status and output."""
    cmd = [sys.executable, "-m", "inferd", "serve", "--port", str(free_port()), "--data-dir", str(data_dir)]
    result = subprocess.run(
        [*cmd, flag, str(path)],
        env=clean_env(ELASTIC_PASSWORD=elastic_password),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("given", ["--ssl-certfile", "--ssl-keyfile"])
def test_serve_with_only_one_tls_file_is_a_clear_startup_error(
    tmp_path: Path, tls_files: tuple[Path, Path], given: str
) -> None:
    cert, key = tls_files
    code, output = serve_with_one_tls_file(
        tmp_path / "data", given, cert if given == "--ssl-certfile" else key, PASSWORD
    )
    assert code != 0, output
    assert TLS_TOGETHER in output, output
    # A configuration mistake is reported as a message, not as a Python traceback.
    assert "Traceback" not in output, output


def test_a_startup_error_does_not_echo_the_elastic_password(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    secret = f"Xq7{uuid.uuid4().hex}"
    code, output = serve_with_one_tls_file(tmp_path / "data", "--ssl-certfile", tls_files[0], secret)
    assert code != 0, output
    assert TLS_TOGETHER in output, output
    # Not the password, nor its first characters (which a truncated repr of the given settings shows).
    assert secret[:3] not in output, output


def test_threaded_server_with_only_one_tls_file_does_not_start(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, _ = tls_files
    with pytest.raises(ValueError, match=TLS_TOGETHER):
        ThreadedServer(tmp_path / "data", ssl_certfile=cert)


# -- passwords and API key secrets never come back out -----------------------------------------------


def capture_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("inferd", "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy.engine", "sqlalchemy.pool"):
        caplog.set_level(logging.DEBUG, logger=name)


def test_passwords_and_api_key_secrets_never_come_back_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    capture_debug_logs(caplog)
    first_password, second_password = f"pw1-{uuid.uuid4().hex}", f"pw2-{uuid.uuid4().hex}"
    wrong_password, wrong_secret = f"wrong-{uuid.uuid4().hex}", f"wrongsecret{uuid.uuid4().hex[:11]}"
    texts: list[str] = []

    with (
        ThreadedServer(tmp_path / "data", extra_services=[SampleService], log_level="debug") as running,
        running.http() as admin,
        running.http(auth=None) as anon,
    ):
        role = admin.put("/_security/role/key_maker", json={"cluster": ["manage_own_api_key", "monitor_inference"]})
        assert role.status_code == 200, role.text
        texts.append(role.text)
        created_user = admin.put(
            "/_security/user/keeper",
            json={"password": first_password, "roles": ["key_maker"], "full_name": "Kee Per"},
        )
        assert created_user.status_code == 200, created_user.text
        texts.append(created_user.text)
        # The user creates a key of their own; the admin creates another, limited by role descriptors.
        own_key = create_api_key(anon, "keeper-key", basic("keeper", first_password))
        admin_key_response = admin.post(
            "/_security/api_key",
            json={"name": "admin-key", "role_descriptors": {"r": {"cluster": ["monitor_inference"]}}},
        )
        assert admin_key_response.status_code == 200, admin_key_response.text
        admin_key = admin_key_response.json()
        key_secrets = [own_key["api_key"], own_key["encoded"], admin_key["api_key"], admin_key["encoded"]]
        assert own_key["api_key"] in base64.b64decode(own_key["encoded"]).decode()  # the secrets are the real ones
        # The user changes their own password.
        changed = anon.post(
            "/_security/user/keeper/_password",
            json={"password": second_password},
            headers=basic("keeper", first_password),
        )
        assert changed.status_code == 200, changed.text
        assert changed.json() == {}
        texts.append(changed.text)

        failures = [
            as_user(anon, "keeper", wrong_password),
            as_user(anon, "keeper", first_password),  # the old password no longer works
            anon.get("/", headers=api_key(encode_key(own_key["id"], wrong_secret))),
        ]
        assert [r.status_code for r in failures] == [401, 401, 401]
        texts.extend(r.text for r in failures)

        keeper = basic("keeper", second_password)
        reads = [
            admin.get("/_security/user"),
            admin.get("/_security/user/keeper"),
            admin.get("/_security/user/keeper,elastic"),
            admin.get("/_security/role"),
            admin.get("/_security/role/key_maker"),
            admin.get("/_security/api_key"),
            admin.get("/_security/api_key", params={"id": own_key["id"], "with_limited_by": "true"}),
            admin.get("/_security/api_key", params={"name": "*", "with_limited_by": "true"}),
            admin.get("/_security/_authenticate"),
            anon.get("/_security/_authenticate", headers=keeper),
            anon.get("/_security/api_key", params={"owner": "true"}, headers=keeper),
            anon.get("/_security/_authenticate", headers=api_key(own_key["encoded"])),
            anon.get("/_security/_authenticate", headers=api_key(admin_key["encoded"])),
            anon.get("/_inference/_all", headers=api_key(admin_key["encoded"])),
        ]
        for response in reads:
            assert response.status_code == 200, (response.request.url, response.text)
        assert "keeper" in reads[1].json()
        assert {k["id"] for k in reads[6].json()["api_keys"]} == {own_key["id"]}
        texts.extend(r.text for r in reads)
        invalidated = admin.request("DELETE", "/_security/api_key", json={"ids": [own_key["id"], admin_key["id"]]})
        assert invalidated.status_code == 200, invalidated.text
        texts.append(invalidated.text)
        texts.append(admin.get("/_security/api_key", params={"id": own_key["id"]}).text)

    secrets = [
        PASSWORD,
        first_password,
        second_password,
        wrong_password,
        wrong_secret,
        *key_secrets,
        basic("keeper", first_password)["Authorization"].split()[1],
        basic("keeper", second_password)["Authorization"].split()[1],
    ]
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret {secret!r} in response: {text[:500]}"
        # Neither the stored hashes.
        assert "$argon2" not in text, text[:500]
        assert "pbkdf2" not in text, text[:500]

    assert caplog.records, "nothing was logged, so the log check proves nothing"
    log_texts = [caplog.text, *(r.getMessage() for r in caplog.records), *(repr(r.args) for r in caplog.records)]
    for text in log_texts:
        for secret in secrets:
            assert secret not in text, f"secret {secret!r} in a log line: {text[:500]}"
