"""The production image's file layout runs a drop and a recipe on Postgres and S3 (moto), from the installed package.

The image tree is built as the Dockerfile builds it: its build stage's COPY lines name the files (the test
follows the file), they are copied into a fresh folder, and installed non-editable like its `pip install .`
(here `--no-deps --target`, so dependencies come from the test venv instead of being downloaded again).
The CLI then runs in a child interpreter started with `-S` from a folder outside the repository: only the
installed tree and the dependencies are importable, never this checkout (the venv's editable install is a
`.pth` hook, which `-S` skips). The instance is helm/dagster.prod.yaml without the Kubernetes run launcher
and run monitoring (no cluster here): Postgres storage, S3 compute logs, run retries, pools.
"""

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mmrecipe.mixture.release import RELEASES
from mmrecipe.stage_output import part_name, stage_prefix
from tests.conftest import SAMPLE_DROPS
from tests.production.prod_support import PROD_INSTANCE_YAML, REPO, S3_TEST_ENV, PostgresServer, S3Server

pytestmark = pytest.mark.slow
DROP = "sample-a"
RECIPE = "default"
# the installed `mmrecipe` console script, found through the installed package's entry points
RUNNER = (
    "import sys; from importlib.metadata import entry_points; "
    "sys.exit(entry_points(group='console_scripts', name='mmrecipe')['mmrecipe'].load()())"
)


def dockerfile_stages() -> list[list[tuple[str, list[str]]]]:
    """(instruction, arguments) of each Dockerfile stage, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[tuple[str, list[str]]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((word.upper(), json.loads(rest) if rest.startswith("[") else shlex.split(rest)))
    return stages


def test_the_final_stage_ships_the_venv_only_and_runs_as_the_charts_user() -> None:
    final = dockerfile_stages()[-1]
    assert [args for word, args in final if word == "COPY"] == [["--from=build", "/opt/venv", "/opt/venv"]]
    assert [args for word, args in final if word == "USER"] == [["10001:10001"]]  # the chart's runAsUser
    cmd = next(args for word, args in final if word == "CMD")
    assert cmd[:3] == ["dagster", "code-server", "start"] and "3030" in cmd
    assert cmd[cmd.index("--module-name") + 1] == "data_assets.definitions"


def copy_like_docker(dest_root: Path) -> Path:
    """Copy what the build stage's COPY lines copy into `dest_root` (honouring .dockerignore); the install dir."""
    ignore_file = REPO / ".dockerignore"
    patterns = [p.strip() for p in ignore_file.read_text().splitlines() if p.strip() and not p.startswith("#")]
    ignored = shutil.ignore_patterns(*[p.rsplit("/", 1)[-1] for p in patterns])
    workdir, install_dir = Path("/"), None
    for word, args in dockerfile_stages()[0]:
        if word == "WORKDIR":
            workdir = workdir / args[0]
        elif word == "COPY":
            assert not any(a.startswith("--from") for a in args), "the build stage copies from the context only"
            *sources, target = args
            target_dir = dest_root / (workdir / target).relative_to("/")
            for src in sources:
                path = REPO / src
                assert path.exists(), f"the Dockerfile copies {src}, which is not in the repository"
                assert not any(fnmatch.fnmatch(src, p) for p in patterns), src
                if path.is_dir():
                    shutil.copytree(path, target_dir, ignore=ignored, dirs_exist_ok=True)
                else:
                    target_dir.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target_dir / path.name)
        elif word == "RUN" and args[:2] == ["pip", "install"] and "." in args:
            assert "-e" not in args and "--editable" not in args, "the image installs the project non-editable"
            install_dir = dest_root / workdir.relative_to("/")
    assert install_dir is not None, "the Dockerfile's build stage has no `pip install .`"
    return install_dir


@pytest.fixture(scope="module")
def image_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project installed (non-editable) from the files the Dockerfile copies; its site dir."""
    root = tmp_path_factory.mktemp("image")
    src = copy_like_docker(root / "context")
    copied = ["pyproject.toml", "setup.py", "README.md", "mmrecipe", "data_assets", "resources", "sensors"]
    assert sorted(p.name for p in src.iterdir()) == sorted([*copied, "partitions", "recipes"])
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-cache-dir",
         "--target", str(site), str(src)],
        check=True, cwd=root, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(root / "context")  # the image ships the venv only: nothing of the build context is left
    return site


def _prod_instance(home: Path, tmp: Path) -> None:
    """helm/dagster.prod.yaml without what needs a cluster, with local artifacts under `tmp`."""
    config = yaml.safe_load(PROD_INSTANCE_YAML.read_text())
    for key in ("run_launcher", "run_monitoring"):
        del config[key]
    config["local_artifact_storage"]["config"]["base_dir"] = str(tmp / "artifacts")
    assert "postgres" in config["storage"] and "S3ComputeLogManager" in config["compute_logs"]["class"]
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def test_the_image_layout_ingests_a_drop_and_builds_a_recipe_on_postgres_and_s3(
    image_site: Path, postgres_server: PostgresServer, s3_server: S3Server, tmp_path: Path
) -> None:
    work = tmp_path / "work"  # the child's cwd: outside the repository
    work.mkdir()
    dagster_home = tmp_path / "dagster_home"
    _prod_instance(dagster_home, tmp_path)
    deps = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMRECIPE_", "DAGSTER_", "PYTHON", "AWS_"))}
    env |= (
        S3_TEST_ENV
        | postgres_server.env()
        | {
            "PYTHONPATH": os.pathsep.join([str(image_site), deps]),
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_COMPUTE_LOGS_BUCKET": s3_server.bucket,
            "DAGSTER_COMPUTE_LOGS_PREFIX": "compute-logs",
            "AWS_ENDPOINT_URL": s3_server.endpoint_url,
            "MMRECIPE_HOME": str(tmp_path / "home"),
            "MMRECIPE_TMP": str(tmp_path / "tmp"),
            "MMRECIPE_LAKE": f"s3://{s3_server.bucket}/lake",
            "MMRECIPE_LANDING": f"s3://{s3_server.bucket}/landing",
            "MMRECIPE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        }
    )

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-S", *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=1200)  # fmt: skip

    # the CMD's code location loads from the installed tree
    where = python("-c", "import data_assets.definitions, mmrecipe; print(mmrecipe.__file__, data_assets.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(Path(f).is_relative_to(image_site) for f in where.stdout.split()), where.stdout
    assert python("-c", f"import sys; sys.path.remove({str(image_site)!r}); import mmrecipe").returncode != 0

    ingest = python("-c", RUNNER, "ingest", str(SAMPLE_DROPS / DROP))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "train quality_classifier: ok" in ingest.stdout and f"ingest {DROP}: ok" in ingest.stdout
    assert "check FAILED [ERROR]" not in ingest.stderr, ingest.stderr

    build = python("-c", RUNNER, "build", RECIPE, "--seeds", "0", "--train-tokens", "4096")
    assert build.returncode == 0, build.stdout + build.stderr
    assert f"build {RECIPE}: ok" in build.stdout and "check FAILED" not in build.stderr, build.stdout + build.stderr

    keys = {
        o["Key"]
        for page in s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket)
        for o in page.get("Contents", [])
    }
    for stage in ("raw_crawl", "filtered_text", "extracted_text", "deduped_images", "transcribed_audio"):
        assert (
            f"lake/{stage_prefix(stage, DROP)}/{part_name(0)}" in keys and f"lake/{stage}/commits/{DROP}.json" in keys
        )
    assert any(k.startswith(f"lake/mixture/{RECIPE}/") for k in keys)
    assert any(k.startswith(f"lake/eval_results/{RECIPE}/") for k in keys)
    assert any(k.startswith(f"lake/{RELEASES}/{RECIPE}/") for k in keys)  # the release was promoted

    import psycopg2

    pg = postgres_server
    with psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.db) as conn:
        cur = conn.cursor()
        cur.execute("SELECT status, count(*) FROM runs GROUP BY status")
        runs = dict(cur.fetchall())
        cur.execute("SELECT asset_key FROM asset_keys")
        assets = {dg.AssetKey.from_db_string(k).to_user_string() for (k,) in cur.fetchall()}
    assert runs == {"SUCCESS": 5}, runs  # raw_crawl, the classifier, the other drop stages, the recipe, the leaderboard
    assert {"raw_crawl", "quality_classifier", "extracted_text", "mixture", "eval_results", "release"} <= assets
    assert not (tmp_path / "home" / "lake").exists()  # nothing went to the embedded default
