"""Security: a TLS scheduler and worker (real `dask` processes on 127.0.0.1) run a real extract
for a client with a certificate from the cluster's CA and refuse clients without one or with one
from another CA; a LocalCluster from `compute.cluster.tls`; nothing in the product unpickles."""

from __future__ import annotations

import datetime
import ipaddress
import re
from pathlib import Path

import pandas as pd
import pytest
from cluster_helpers import (
    REPO,
    Procs,
    run_extract,
    start_scheduler,
    start_worker,
    wait_for_workers,
)

from jobs.cluster import ClusterConfig, TLSConfig, open_client, security_from

pytestmark = pytest.mark.timeout(180)

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

REFUSE_TIMEOUT = "4s"


# ---------------------------------------------------------------- a throw-away PKI


def _name(common_name: str):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(folder: Path, stem: str, cert, key) -> tuple[str, str]:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return str(cert_path), str(key_path)


def make_ca(folder: Path, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path, _ = _write(folder, name, cert, key)
    return cert, key, path


def make_cert(folder: Path, stem: str, ca) -> tuple[str, str]:
    ca_cert, ca_key, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(stem)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _write(folder, stem, cert, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder, "audiofeat-test-ca")
    other_ca = make_ca(folder, "someone-else-ca")
    return {
        "ca": ca[2],
        "scheduler": make_cert(folder, "scheduler", ca),
        "worker": make_cert(folder, "worker", ca),
        "client": make_cert(folder, "client", ca),
        "other_ca": other_ca[2],
        "rogue": make_cert(folder, "rogue-client", other_ca),
    }


@pytest.fixture(scope="module")
def tls_scheduler(pki, tmp_path_factory):
    """A TLS `dask scheduler` and one TLS `dask worker` as subprocesses on 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("tls-dask")
    with Procs() as procs:
        info = start_scheduler(procs, workdir, protocol="tls", tls_args=[
            "--tls-ca-file", pki["ca"], "--tls-cert", pki["scheduler"][0],
            "--tls-key", pki["scheduler"][1]])
        start_worker(procs, info["address"], workdir, tls_args=[
            "--tls-ca-file", pki["ca"], "--tls-cert", pki["worker"][0],
            "--tls-key", pki["worker"][1]])
        wait_for_workers(info["address"], 1, security=security_from(pki["ca"], *pki["client"]))
        yield info


def _client_flags(pki, cert_key) -> list[str]:
    return ["--tls-ca", pki["ca"], "--tls-cert", cert_key[0], "--tls-key", cert_key[1]]


# ---------------------------------------------------------------- the TLS cluster


def test_tls_scheduler_and_worker_speak_tls_only(tls_scheduler, pki):
    assert tls_scheduler["address"].startswith("tls://127.0.0.1:")
    with open_client(scheduler=tls_scheduler["address"],
                     security=security_from(pki["ca"], *pki["client"])) as client:
        workers = client.scheduler_info()["workers"]
        assert workers and all(a.startswith("tls://127.0.0.1:") for a in workers)
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6


def test_extract_through_tls_with_client_certificate(tls_scheduler, pki, tmp_path):
    out = tmp_path / "run"
    result = run_extract(out, "--scheduler", tls_scheduler["address"],
                         *_client_flags(pki, pki["client"]))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(pd.read_parquet(out / "files.parquet")) == 3
    manifest = pd.read_json(out / "manifest.json", typ="series")
    assert manifest["cluster"]["scheduler"] == tls_scheduler["address"]


def test_client_without_certificate_is_refused(tls_scheduler, pki):
    from distributed import Client

    # no TLS at all: the plain-TCP handshake never completes
    plain = tls_scheduler["address"].replace("tls://", "tcp://")
    with pytest.raises((OSError, TimeoutError)):
        Client(plain, timeout=REFUSE_TIMEOUT)
    # TLS, trusting the CA, but presenting no certificate: the scheduler requires one.
    # (distributed's Security builds no TLS context without a certificate, so talk TLS directly;
    # the same context with the client certificate loaded is let in.)
    address = tls_scheduler["address"]
    assert _tls_handshake(address, pki["ca"], None) is False
    assert _tls_handshake(address, pki["ca"], pki["client"]) is True


def _tls_handshake(address: str, ca: str, cert_key) -> bool:
    """Whether the scheduler completes a Dask handshake over TLS with this client context."""
    import asyncio
    import ssl

    from distributed.comm import connect

    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.check_hostname = False
    if cert_key:
        ctx.load_cert_chain(*cert_key)

    async def attempt():
        comm = await connect(address, timeout=REFUSE_TIMEOUT, ssl_context=ctx)
        try:
            await comm.write({"op": "identity"})
            reply = await asyncio.wait_for(comm.read(), 5)
            return isinstance(reply, dict) and reply.get("type") == "Scheduler"
        finally:
            comm.abort()

    try:
        return asyncio.run(attempt())
    except (OSError, TimeoutError, asyncio.TimeoutError):
        return False


def test_client_without_certificate_flags_gets_exit_2(tls_scheduler, tmp_path):
    result = run_extract(tmp_path / "run", "--scheduler", tls_scheduler["address"], timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "uses TLS" in result.stderr and "--tls-ca" in result.stderr


def test_a_plain_tcp_address_of_a_tls_scheduler_is_named_as_the_likely_mistake(tls_scheduler, tmp_path):
    plain = tls_scheduler["address"].replace("tls://", "tcp://")
    result = run_extract(tmp_path / "run", "--scheduler", plain, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot connect" in result.stderr and "tls://" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_client_certificate_from_another_ca_is_refused(tls_scheduler, pki):
    from distributed import Client

    # the rogue client trusts the real CA (so it accepts the scheduler), but its own
    # certificate is signed by another CA: the scheduler refuses it
    rogue = security_from(pki["ca"], *pki["rogue"])
    with pytest.raises((OSError, TimeoutError)):
        Client(tls_scheduler["address"], security=rogue, timeout=REFUSE_TIMEOUT)
    # and a client that trusts only the other CA refuses the scheduler
    wrong_trust = security_from(pki["other_ca"], *pki["rogue"])
    with pytest.raises((OSError, TimeoutError)):
        Client(tls_scheduler["address"], security=wrong_trust, timeout=REFUSE_TIMEOUT)


def test_rogue_certificate_extract_fails_cleanly(tls_scheduler, pki, tmp_path):
    result = run_extract(tmp_path / "run", "--scheduler", tls_scheduler["address"],
                         *_client_flags(pki, pki["rogue"]), timeout=90)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot connect" in result.stderr
    assert not (tmp_path / "run" / "files.parquet").exists()


# ---------------------------------------------------------------- LocalCluster with TLS config


def test_local_cluster_from_tls_config(pki):
    from distributed import Client

    cert, key = pki["scheduler"]
    cfg = ClusterConfig(tls=TLSConfig(ca_file=pki["ca"], cert=cert, key=key))
    with open_client(cfg, n_workers=1) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert all(a.startswith("tls://127.0.0.1:") for a in client.scheduler_info()["workers"])
        assert client.submit(sum, [4, 5]).result(timeout=30) == 9
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout=REFUSE_TIMEOUT)
        with pytest.raises((OSError, TimeoutError)):
            Client(address, security=security_from(pki["ca"], *pki["rogue"]),
                   timeout=REFUSE_TIMEOUT)


def test_tls_config_with_missing_file_names_the_key(tmp_path):
    from jobs.errors import UsageError

    cfg = ClusterConfig(tls=TLSConfig(ca_file=str(tmp_path / "ca.pem"), cert="c", key="k"))
    with pytest.raises(UsageError, match=r"compute\.cluster\.tls\.ca_file: no such file"), \
            open_client(cfg, n_workers=1):
        pass


# ---------------------------------------------------------------- nothing unpickles from disk

_UNPICKLING = re.compile(r"\b(pickle\.loads?|cPickle\.loads?|joblib\.load|torch\.load|"
                         r"dill\.loads?|cloudpickle\.loads?|pd\.read_pickle|read_pickle|"
                         r"np\.load\([^)]*allow_pickle\s*=\s*True)")


def test_product_sources_never_unpickle():
    """Models are ONNX, stores Zarr/Parquet/JSON: no product module loads pickles (which run
    arbitrary code). Dask's own wire protocol between trusted processes is not in scope."""
    hits = []
    for folder in ("jobs", "featurelib"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if _UNPICKLING.search(code):
                    hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, "unpickling in the product:\n" + "\n".join(hits)


# ---------------------------------------------------------------- cluster/local/start.sh with TLS


def test_local_scripts_with_tls(pki, tmp_path):
    """start.sh with AUDIOFEAT_TLS_*: a TLS scheduler and worker on 127.0.0.1, an extract with
    the client certificate, then stop.sh; a client without a certificate is refused."""
    import contextlib
    import subprocess

    import psutil
    from cluster_helpers import quiet_env

    start, stop = REPO / "cluster" / "local" / "start.sh", REPO / "cluster" / "local" / "stop.sh"
    state = tmp_path / "cluster"
    cert, key = pki["worker"]
    env = quiet_env(AUDIOFEAT_CLUSTER_DIR=str(state), AUDIOFEAT_TLS_CA=pki["ca"],
                    AUDIOFEAT_TLS_CERT=cert, AUDIOFEAT_TLS_KEY=key, AUDIOFEAT_GPU="0")
    try:
        started = subprocess.run(["bash", str(start), "1"], capture_output=True, text=True,
                                 env=env, timeout=90)
        assert started.returncode == 0, started.stdout + started.stderr
        address = started.stdout.strip().splitlines()[-1]
        assert address.startswith("tls://127.0.0.1:"), started.stdout
        result = run_extract(tmp_path / "run", "--scheduler", address,
                             *_client_flags(pki, pki["client"]))
        assert result.returncode == 0, result.stderr[-3000:]
        assert _tls_handshake(address, pki["ca"], None) is False
    finally:
        subprocess.run(["bash", str(stop)], capture_output=True, text=True, env=env, timeout=60)
        pids_file = state / "pids"
        if pids_file.exists():  # stop.sh failed: end what start.sh started, by pid
            for pid in (int(p) for p in pids_file.read_text().split()):
                with contextlib.suppress(psutil.NoSuchProcess):
                    for proc in [*psutil.Process(pid).children(recursive=True), psutil.Process(pid)]:
                        with contextlib.suppress(psutil.NoSuchProcess):
                            proc.kill()
    assert not (state / "pids").exists()


def test_cli_certificates_secure_the_local_cluster(pki):
    """--tls-* without --scheduler: the LocalCluster audiofeat starts uses those certificates."""
    sec = security_from(pki["ca"], *pki["client"])
    with open_client(ClusterConfig(), n_workers=1, security=sec) as client:
        assert client.scheduler.address.startswith("tls://127.0.0.1:")
        assert client.submit(sum, [1, 1]).result(timeout=30) == 2
        assert _tls_handshake(client.scheduler.address, pki["ca"], None) is False


def test_tls_paths_in_a_config_resolve_against_its_folder(tmp_path, monkeypatch):
    """As input, out and labels.csv: a config read from another working directory finds its
    certificates (it looked for ca.pem in the working directory)."""
    from jobs.config import load_config

    folder = tmp_path / "conf"
    (folder / "certs").mkdir(parents=True)
    (folder / "job.yaml").write_text("input: data\nout: runs/x\ncompute:\n  cluster:\n    tls:\n"
                                     "      ca_file: certs/ca.pem\n      cert: certs/node.pem\n"
                                     "      key: /abs/node.key\n")
    monkeypatch.chdir(tmp_path)
    tls = load_config(folder / "job.yaml").compute.cluster.tls
    assert (tls.ca_file, tls.cert, tls.key) == (str(folder / "certs" / "ca.pem"),
                                                str(folder / "certs" / "node.pem"), "/abs/node.key")


def test_certificates_with_a_tcp_address_say_the_address_needs_tls(tls_scheduler, pki, tmp_path):
    """Not the probe's "encryption required by Dask configuration" under "is it a Dask
    scheduler's address?": the address is the mistake."""
    address = tls_scheduler["address"].replace("tls://", "tcp://")
    result = run_extract(tmp_path / "run", "--scheduler", address,
                         *_client_flags(pki, pki["client"]), timeout=90)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"scheduler {address}: TLS certificates given, so the address must start with tls://" \
        in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_a_certificate_with_another_certificates_key_is_refused_by_flag(pki):
    """The CA loads, the certificate and key do not match: said before any cluster starts."""
    from jobs.errors import UsageError

    with pytest.raises(UsageError, match=r"^--tls-cert, --tls-key: .*not a PEM certificate and its "
                                         r"private key"):
        security_from(pki["ca"], pki["client"][0], pki["worker"][1])
    assert security_from(pki["ca"], *pki["client"]) is not None
