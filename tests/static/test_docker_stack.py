"""Check the Docker stack (docker/, .env.example, .dockerignore) against the repository without Docker.

docker/Dockerfile is read with dockerfile-parse, docker/docker-compose.yml with PyYAML; `docker compose
config` runs too where the compose plugin is installed.
"""

from __future__ import annotations

import functools
import http.server
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
LOOPBACK = "127.0.0.1"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH_STRING|API_KEY|PRIVATE_KEY", re.IGNORECASE)
CREDENTIAL_URL = re.compile(r"://[^/@\s]+:[^/@\s]+@")
# Compose interpolation: `${NAME}`, `${NAME<op>text}` (op :- - :? ?), `$NAME`; `$$` escapes a dollar.
VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_]\w*)([^}]*)\}|([A-Za-z_]\w*))")


@functools.cache
def compose() -> dict[str, Any]:
    """The compose file as PyYAML loads it (anchors and `<<` merges resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict[str, Any]:
    """One compose service."""
    return compose()["services"][name]


def scalars(node: Any) -> list[str]:
    """Every scalar value of a YAML tree as a string: what compose interpolates (no keys, no comments)."""
    if isinstance(node, dict | list):
        return [s for value in (node.values() if isinstance(node, dict) else node) for s in scalars(value)]
    return [] if node is None else [str(node)]


def references(*texts: str) -> list[tuple[str, str]]:
    """Find the variables compose interpolates into some values.

    Args:
        *texts: Values of the compose file.

    Returns:
        (name, what follows the name inside the braces, e.g. ":?message") per reference, in order.
    """
    return [(braced or bare, rest) for text in texts for braced, rest, bare in VARIABLE.findall(text)]


def environment(name: str) -> dict[str, str]:
    """The `environment` mapping of a compose service."""
    return {key: str(value) for key, value in (service(name).get("environment") or {}).items()}


def argv(node: dict[str, Any], *keys: str) -> list[str]:
    """Read command lines of the compose file, in the exec (list) or the shell (string) form.

    Args:
        node: A service, or its healthcheck.
        *keys: Which command lines to join, e.g. "entrypoint", "command"; missing ones are empty.

    Returns:
        The arguments, one list.
    """
    values = [node.get(key) or [] for key in keys]
    return [str(a) for value in values for a in (shlex.split(value) if isinstance(value, str) else value)]


@functools.cache
def pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@functools.cache
def parser() -> DockerfileParser:
    """docker/Dockerfile as dockerfile-parse reads it (content cached, never written)."""
    return DockerfileParser(str(DOCKERFILE), cache_content=True)


def instructions() -> list[tuple[int, dict[str, Any], Any]]:
    """(stage number, instruction, dockerfile-parse context) of every Dockerfile instruction but comments."""
    stage, result = -1, []
    for item, context in zip(parser().structure, parser().context_structure, strict=True):
        stage += item["instruction"] == "FROM"
        if item["instruction"] != "COMMENT":
            result.append((stage, item, context))
    return result


def values(instruction: str) -> list[str]:
    """The arguments of every `instruction` of the Dockerfile, in order."""
    return [item["value"] for _, item, _ in instructions() if item["instruction"] == instruction]


def context_copies() -> list[tuple[int, int, list[str], str]]:
    """List the Dockerfile's COPYs from the build context (not `--from` another stage).

    Returns:
        (stage number, line number, source paths, destination made absolute with WORKDIR) per COPY.
    """
    copies, workdir = [], "/"
    for stage, item, _ in instructions():
        words = shlex.split(item["value"])
        if item["instruction"] in ("FROM", "WORKDIR"):
            workdir = posixpath.join(workdir, words[0]) if item["instruction"] == "WORKDIR" else "/"
        elif item["instruction"] == "COPY" and not any(w.startswith("--from") for w in words):
            *sources, destination = [w for w in words if not w.startswith("--")]
            copies.append((stage, item["startline"], sources, posixpath.join(workdir, destination)))
    return copies


def repo_file_in_image(path: str) -> Path | None:
    """Follow the final stage's COPYs back from a path inside the image.

    Args:
        path: An absolute path in the image, e.g. "/app/configs/bike_sharing.yaml".

    Returns:
        The repository file it is copied from, or None when no COPY of the final stage puts it there.
    """
    final = instructions()[-1][0]
    for stage, _, sources, destination in context_copies():
        for source in sources if stage == final else []:
            target = destination + Path(source).name if destination.endswith("/") else destination
            if path == target or path.startswith(target + "/"):
                return ROOT / source / path[len(target) :].lstrip("/")
    return None


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    """.env.example as a dict; asserts every line is a comment or a NAME=value with a new NAME."""
    lines = [ln.strip() for ln in ENV_EXAMPLE.read_text().splitlines() if ln.strip()[:1] not in ("", "#")]
    pairs = [ln.split("=", 1) for ln in lines]
    assert all(len(p) == 2 and re.fullmatch(r"[A-Za-z_]\w*", p[0]) for p in pairs), "not NAME=value"
    assert len({p[0] for p in pairs}) == len(pairs), ".env.example defines a name twice"
    return dict(pairs)


def one_shots() -> set[str]:
    """The services that run once and exit (`restart: "no"`): preflight and mlflow-users."""
    return {name for name, spec in compose()["services"].items() if spec.get("restart") == "no"}


def test_services_are_health_checked_on_their_endpoints_and_wait_for_healthy() -> None:
    services = compose()["services"]
    assert {"postgres", "prefect-server", "mlflow", "pipeline"} <= set(services)
    assert one_shots() == {"preflight", "mlflow-users"}
    probes = {}
    for name, spec in services.items():
        check = spec.get("healthcheck") or {}
        if name not in one_shots():
            assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
            probes[name] = " ".join(argv(check, "test"))
        depends = spec.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must name a condition per service"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on an unknown service {target}"
            # A one-shot is never healthy: wait for it to exit 0 instead.
            wanted = "service_completed_successfully" if target in one_shots() else "service_healthy"
            assert (rule or {}).get("condition") == wanted, f"{name} must wait for {target}"
    assert "pg_isready" in probes["postgres"]
    assert "http://127.0.0.1:4200/api/health" in probes["prefect-server"]
    assert "http://127.0.0.1:5000/health" in probes["mlflow"]
    assert "http://127.0.0.1:8080/health" in probes["pipeline"]  # the Prefect runner's webserver ...
    assert parser().envs.get("PREFECT_RUNNER_SERVER_ENABLE") == "true"  # ... which the image enables
    assert parser().envs.get("PREFECT_RUNNER_SERVER_PORT") == "8080"
    servers = {*services["prefect-server"]["depends_on"], *services["mlflow"]["depends_on"]}
    assert servers == {"postgres", "preflight"}
    assert {"prefect-server", "mlflow"} <= set(services["pipeline"]["depends_on"])


def test_healthcheck_script_reports_success_and_failure(tmp_path: Path) -> None:
    script = DOCKER / "healthcheck.py"
    checks = [spec["healthcheck"] for spec in compose()["services"].values()]
    probes = [argv(check, "test")[1:] for check in checks if not check.get("disable")]
    probes.append(json.loads(values("HEALTHCHECK")[-1].split("CMD", 1)[1]))
    for probe in (p for p in probes if p[0] == "python"):
        assert probe[1] == "/app/docker/healthcheck.py" and repo_file_in_image(probe[1]) == script, probe
    (tmp_path / "health").write_text("ok")  # served with 200; anything else is a 404
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run, base = [sys.executable, str(script)], f"http://{LOOPBACK}:{server.server_address[1]}"
    try:
        assert subprocess.run([*run, f"{base}/health"], capture_output=True).returncode == 0
        assert subprocess.run([*run, f"{base}/down"], capture_output=True).returncode == 1
    finally:
        server.shutdown()
    closed = subprocess.run([*run, f"http://{LOOPBACK}:9/health"], capture_output=True, text=True)
    assert closed.returncode == 1 and "unhealthy" in closed.stderr


def test_ports_bind_to_loopback_and_the_pipeline_cannot_reach_postgres(env_example: dict[str, str]) -> None:
    published = {}
    for name, spec in compose()["services"].items():
        for port in spec.get("ports") or []:
            assert isinstance(port, str), f"{name}: use the short HOST:PUBLISHED:TARGET form"
            host = re.match(r"(?:\$\{(\w+):-([^}]*)\}|([^:$]+)):", port)
            assert host, f"{name}: {port!r} has no host address, so it binds to every interface"
            variable, default, literal = host.groups()
            # Loopback with no .env at all, and with the example's settings.
            assert (literal or default) == LOOPBACK, f"{name}: {port!r}"
            assert variable is None or env_example[variable] == LOOPBACK, f".env.example: {variable}"
            published[name] = port.rsplit(":", 1)[1]
    assert published == {"prefect-server": "4200", "mlflow": "5000"}, "only the two UIs are published"
    db_networks = set(service("postgres").get("networks") or ["default"])
    internal = {name for name, spec in compose()["networks"].items() if (spec or {}).get("internal")}
    assert db_networks <= internal, f"postgres is on networks that are not internal: {db_networks - internal}"
    assert not db_networks & set(service("pipeline").get("networks") or ["default"])


def test_env_example_defines_exactly_the_compose_variables(env_example: dict[str, str]) -> None:
    used = {name for name, _ in references(*scalars(compose()))}
    assert used, "the compose file should take its settings from .env"
    assert not used - set(env_example), f"not in .env.example: {sorted(used - set(env_example))}"
    assert not set(env_example) - used, f"unused in .env.example: {sorted(set(env_example) - used)}"


def test_secrets_are_required_variables_with_placeholders_never_literals(env_example: dict[str, str]) -> None:
    required = {name for name, rest in references(*scalars(compose())) if rest[:2] in (":?", "?")}
    secrets = {"POSTGRES_PASSWORD", "PREFECT_AUTH_STRING", "MLFLOW_ADMIN_PASSWORD"}
    assert secrets | {"POSTGRES_USER", "MLFLOW_FLASK_SECRET_KEY", "PIPELINE_MLFLOW_PASSWORD"} <= required
    for name in filter(SECRET_NAME.search, env_example):
        assert "CHANGE-ME" in env_example[name], f".env.example: {name} must be an obvious placeholder"
    assert env_example["PIPELINE_MLFLOW_USERNAME"] != env_example["MLFLOW_ADMIN_USERNAME"]
    assert env_example["PIPELINE_MLFLOW_PASSWORD"] != env_example["MLFLOW_ADMIN_PASSWORD"]
    assert re.fullmatch(r"[^:]+:.+", env_example["PREFECT_AUTH_STRING"]), "PREFECT_AUTH_STRING: user:password"
    for name, spec in compose()["services"].items():
        for key, value in environment(name).items():
            if SECRET_NAME.search(key) or CREDENTIAL_URL.search(value):
                assert references(value), f"{name}.{key} holds a literal secret"
                assert all(rest[:2] not in (":-", "-") for _, rest in references(value)), f"{name}.{key}"
            userinfo = re.search(r"://([^/@\s]*)@", value)
            password = userinfo.group(1).partition(":")[2] if userinfo else ""
            assert not password or re.fullmatch(r"\$\{\w+(:?\?[^}]*)?\}", password), f"{name}.{key}"
        assert not any(map(CREDENTIAL_URL.search, argv(spec, "entrypoint", "command"))), f"{name}: argv"
    text = " ".join(scalars(compose())).lower()
    found = [w for w in ("password1234", "changeme", "change-me", "secret123", "hunter2") if w in text]
    assert not found, f"the compose file holds example secrets: {found}"


def test_services_are_wired_to_each_other() -> None:
    prefect, mlflow, pipeline = environment("prefect-server"), environment("mlflow"), environment("pipeline")
    url = prefect["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and url.endswith("@postgres:5432/prefect"), url
    assert prefect["PREFECT_SERVER_API_AUTH_STRING"].startswith("${PREFECT_AUTH_STRING:?")
    command = argv(service("prefect-server"), "entrypoint", "command")
    assert command[:3] == ["prefect", "server", "start"] and "0.0.0.0" in command
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the image ships psycopg2.
    store = mlflow["MLFLOW_BACKEND_STORE_URI"]
    assert store.startswith("postgresql+psycopg2://") and store.endswith("@postgres:5432/mlflow"), store
    assert mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD")
    assert pipeline["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert pipeline["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert pipeline["PREFECT_API_AUTH_STRING"].startswith("${PREFECT_AUTH_STRING")
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(pipeline)


def test_prefect_and_mlflow_variable_names_are_real_settings(env_example: dict[str, str]) -> None:
    import mlflow.environment_variables as mlflow_variables
    from mlflow.cli import server as mlflow_server
    from prefect.settings import Settings
    from prefect.settings.legacy import _get_valid_setting_names

    prefect = set(_get_valid_setting_names(Settings))
    mlflow = {name for name in dir(mlflow_variables) if name.startswith("MLFLOW_")}
    mlflow |= {p.envvar for p in mlflow_server.params if isinstance(p.envvar, str)}
    assert "PREFECT_SERVER_API_AUTH_STRING" in prefect and "PREFECT_BOGUS_SETTING" not in prefect
    assert {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_ADMIN_PASSWORD"} <= mlflow
    # preflight's environment holds the .env names themselves (checked against .env.example below).
    named = {name: set(environment(name)) for name in compose()["services"] if name != "preflight"}
    named["Dockerfile ENV"] = {
        n for _, item, ctx in instructions() if item["instruction"] == "ENV" for n in ctx.line_envs
    }
    for where, names in named.items():
        assert not {n for n in names if n.startswith("PREFECT_")} - prefect, f"{where}: not a Prefect setting"
        assert not {n for n in names if n.startswith("MLFLOW_")} - mlflow, f"{where}: not an MLflow setting"
    # Prefect reads `.env` in the working directory: a setting there would leak into local runs.
    assert not set(env_example) & prefect, ".env.example sets Prefect settings directly"


def test_built_and_mounted_files_exist() -> None:
    built = {name: spec for name, spec in compose()["services"].items() if "build" in spec}
    assert set(built) == {"preflight", "prefect-server", "mlflow", "mlflow-users", "pipeline"}
    assert len({spec.get("image") for spec in built.values()}) == 1, "the services share one image"
    for name, spec in built.items():
        assert (DOCKER / spec["build"]["context"]).resolve() == ROOT, f"{name}: context is the repository"
        assert (ROOT / spec["build"]["dockerfile"]).resolve() == DOCKERFILE, name
    declared = set(compose().get("volumes") or {})
    for name, spec in compose()["services"].items():
        for source in (volume.split(":")[0] for volume in spec.get("volumes") or []):
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name}: mounted {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_postgres_creates_both_databases_and_mlflow_reads_its_auth_config() -> None:
    from mlflow.server.auth import config as auth_config

    sql = (DOCKER / "postgres" / "init.sql").read_text().splitlines()
    sql = "\n".join(ln for ln in sql if not ln.lstrip().startswith("--"))
    assert all(re.search(rf"CREATE DATABASE {db}\b", sql) for db in ("prefect", "mlflow"))
    initdb = "./postgres/init.sql:/docker-entrypoint-initdb.d/"
    assert any(v.startswith(initdb) for v in service("postgres")["volumes"]), "init.sql is not mounted"
    assert environment("postgres")["POSTGRES_DB"] not in ("prefect", "mlflow")
    mlflow = service("mlflow")
    command = argv(mlflow, "entrypoint", "command")
    assert command[:2] == ["mlflow", "server"] and command[command.index("--app-name") + 1] == "basic-auth"
    assert {"--serve-artifacts", "--artifacts-destination", "--host"} <= set(command)
    ini = next(v.split(":")[1] for v in mlflow["volumes"] if v.startswith("./mlflow/basic_auth.ini:"))
    assert ini == environment("mlflow")["MLFLOW_AUTH_CONFIG_PATH"]
    assert "/mlflow" in {v.split(":")[1] for v in mlflow["volumes"] if not v.startswith(".")}
    with pytest.MonkeyPatch.context() as patch:  # read by MLflow, as the service will
        patch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(DOCKER / "mlflow" / "basic_auth.ini"))
        patch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
        assert not auth_config.read_auth_config().admin_password, "the admin password comes from .env"
        patch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "someone")
        patch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "from-the-environment")
        parsed = auth_config.read_auth_config()
    assert (parsed.admin_username, parsed.admin_password) == ("someone", "from-the-environment")
    assert parsed.database_uri.startswith("sqlite:////mlflow/"), "the auth database is on the mlflow volume"


def test_pipeline_runs_retrain_serve_with_a_config_from_the_image() -> None:
    from core.config import load_config

    assert json.loads(values("ENTRYPOINT")[-1]) == ["retrain"]
    pipeline = argv(service("pipeline"), "entrypoint") or ["retrain"]
    default = ["retrain", *json.loads(values("CMD")[-1])]
    for command in (pipeline + argv(service("pipeline"), "command"), default):
        assert command[:2] == ["retrain", "serve"], command
        config = repo_file_in_image(command[command.index("--config") + 1])
        assert config and config.is_file(), f"{command}: the config is not copied into the image"
        # Every ${VAR} of the config must be set in the container: the image's ENV plus the service's.
        assert load_config(config, {**parser().envs, **environment("pipeline")}).name
    module, _, function = pyproject()["project"]["scripts"]["retrain"].partition(":")
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    cli = subprocess.run(
        [sys.executable, "-c", code, "serve", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert cli.returncode == 0 and "--config" in cli.stdout, cli.stdout + cli.stderr


def test_dockerfile_installs_every_package_and_runs_as_non_root_without_secrets() -> None:
    project = pyproject()
    stage, run, _ = next(i for i in instructions() if re.search(r"pip install .*\.\[", i[1]["value"]))
    copied = [(s, line, src, dest) for s, line, sources, dest in context_copies() for src in sources]
    before = {src.rstrip("/") for s, line, src, _ in copied if s == stage and line < run["startline"]}
    missing = [p for p in project["tool"]["setuptools"]["packages"] if p not in before]
    assert not missing, f"packages of pyproject.toml not copied before `pip install`: {missing}"
    assert {"pyproject.toml", project["project"]["readme"], "docker/constraints.txt"} <= before
    extras = re.search(r"\.\[([^\]]+)\]", run["value"])
    assert "--constraint docker/constraints.txt" in run["value"] and extras, run["value"]
    assert {"server", "postgres"} <= {e.strip() for e in extras.group(1).split(",")}
    assert {"server", "postgres"} <= set(project["project"]["optional-dependencies"])
    for _, _, src, dest in copied:
        assert (ROOT / src).exists() and ".env" not in src + dest, f"COPY {src} {dest}: missing, or env file"
    base = parser().parent_images[-1]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), f"the image is based on {base}"
    final = instructions()[-1][0]
    users = [item["value"] for s, item, _ in instructions() if s == final and item["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    assert values("HEALTHCHECK") and values("HEALTHCHECK")[-1].upper() != "NONE", "no healthcheck"
    defined = {name for _, _, context in instructions() for name in (*context.line_envs, *context.line_args)}
    assert not set(filter(SECRET_NAME.search, defined)), "a secret in a Dockerfile ENV or ARG"
    assert not CREDENTIAL_URL.search(DOCKERFILE.read_text()), "credentials in a URL in the Dockerfile"


def test_constraints_pin_the_tested_versions() -> None:
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = (DOCKER / "constraints.txt").read_text().splitlines()
    pins = [Requirement(ln) for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    pins = {canonicalize_name(r.name): str(r.specifier) for r in pins}
    for package in ("prefect", "mlflow", "psycopg2-binary", "asyncpg", "prefect-dask", "distributed"):
        tested = f"=={metadata.version(package)}"
        assert pins.get(package) == tested, f"constraints.txt: {package}{pins.get(package)}, tested {tested}"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    missing = {".env", "**/.env", ".venv", ".retrain", ".git", "**/__pycache__"} - patterns
    assert not missing, f".dockerignore does not exclude {sorted(missing)}"
    for _, _, sources, _ in context_copies():
        for parts in (Path(src).parts for src in sources):
            ignored = {"/".join(parts[: i + 1]) for i in range(len(parts))} & patterns
            assert not ignored, f"{'/'.join(parts)} is copied but .dockerignore excludes {ignored}"


def test_docker_compose_accepts_the_file_and_requires_the_secrets() -> None:
    docker, standalone = shutil.which("docker"), shutil.which("docker-compose")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        command = [docker, "compose"]
    elif standalone and subprocess.run([standalone, "version"], capture_output=True).returncode == 0:
        command = [standalone]
    else:
        pytest.skip("no `docker compose` plugin or docker-compose binary on this machine")
    for env_file, valid in ((ENV_EXAMPLE, True), (Path("/dev/null"), False)):  # no .env: compose refuses
        config = [*command, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "--quiet"]
        result = subprocess.run(config, capture_output=True, text=True, cwd=ROOT)
        assert (result.returncode == 0) == valid and (valid or "POSTGRES" in result.stderr), result.stderr


# What the postgres image's entrypoint needs as root before it drops to the `postgres` user.
POSTGRES_CAPABILITIES = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}
PREFLIGHT = DOCKER / "preflight.py"


def real_env(env_example: dict[str, str]) -> dict[str, str]:
    """.env.example with every placeholder replaced by a fresh random-looking value."""
    real = dict(env_example)
    for index, name in enumerate(n for n, value in env_example.items() if "CHANGE-ME" in value):
        secret = f"{index}f3a9c1e7b5d2048c6e1a9f3b7d5c2e0{index}"
        real[name] = f"admin:{secret}" if name == "PREFECT_AUTH_STRING" else secret
    return real


def run_preflight(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run docker/preflight.py on the host against a .env holding `env`."""
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    command = [sys.executable, str(PREFLIGHT), "--env-file", str(env_file), "--example", str(ENV_EXAMPLE)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def test_every_service_drops_privileges_and_has_a_read_only_root() -> None:
    for name, spec in compose()["services"].items():
        assert "no-new-privileges:true" in (spec.get("security_opt") or []), f"{name}: no-new-privileges"
        assert spec.get("cap_drop") == ["ALL"], f"{name}: must drop every capability"
        added = set(spec.get("cap_add") or [])
        assert added <= (POSTGRES_CAPABILITIES if name == "postgres" else set()), f"{name}: cap_add {added}"
        assert spec.get("read_only") is True, f"{name}: the root filesystem must be read-only"
        tmpfs = [entry.split(":")[0] for entry in spec.get("tmpfs") or []]
        assert "/tmp" in tmpfs, f"{name}: /tmp must be a tmpfs on a read-only root"
        assert spec.get("privileged") is not True and "user" not in spec, name
    assert "/var/run/postgresql" in service("postgres")["tmpfs"], "postgres needs its socket directory"
    # The image's user must own the tmpfs mounted inside its home directory.
    for entry in service("pipeline")["tmpfs"]:
        path, _, options = entry.partition(":")
        assert not path.startswith("/home/") or {"uid=1000", "gid=1000"} <= set(options.split(",")), entry


def test_preflight_rejects_the_placeholders_of_env_example(
    tmp_path: Path, env_example: dict[str, str]
) -> None:
    placeholders = [name for name, value in env_example.items() if "CHANGE-ME" in value]
    assert len(placeholders) >= 5
    result = run_preflight(tmp_path, env_example)
    assert result.returncode == 1, result.stderr
    for name in placeholders:
        assert f"preflight: {name} still holds the placeholder" in result.stderr, name
    # One placeholder left among real values is enough; its paragraph names it and the fix.
    for name in placeholders:
        result = run_preflight(tmp_path, {**real_env(env_example), name: env_example[name]})
        paragraphs = [p for p in result.stderr.split("\n\n") if p.strip()]
        assert result.returncode == 1 and len(paragraphs) == 1, result.stderr
        assert name in paragraphs[0] and "Fix: " in paragraphs[0] and "\n" not in paragraphs[0].strip()


def test_preflight_accepts_real_values_and_rejects_weak_ones(
    tmp_path: Path, env_example: dict[str, str]
) -> None:
    real = real_env(env_example)
    accepted = run_preflight(tmp_path, real)
    assert accepted.returncode == 0 and not accepted.stderr, accepted.stderr
    weak = {
        "MLFLOW_ADMIN_PASSWORD": "changeme-but-longer",
        "POSTGRES_PASSWORD": "short",
        "PIPELINE_MLFLOW_USERNAME": real["MLFLOW_ADMIN_USERNAME"],
        "PIPELINE_MLFLOW_PASSWORD": real["MLFLOW_ADMIN_PASSWORD"],
        "PREFECT_AUTH_STRING": "no-colon-in-this-string",
        "POSTGRES_USER": "user@host",
    }
    for name, value in weak.items():
        result = run_preflight(tmp_path, {**real, name: value})
        assert result.returncode == 1 and f"preflight: {name}" in result.stderr, (name, result.stderr)
    # A placeholder without the CHANGE-ME marker is still caught: the example's values are compared.
    unmarked = tmp_path / "unmarked.env.example"
    unmarked.write_text(
        ENV_EXAMPLE.read_text().replace("CHANGE-ME-mlflow-admin-password", "example-pass-1234")
    )
    env_file = tmp_path / "stack.env"
    env_file.write_text(
        "".join(f"{k}={v}\n" for k, v in {**real, "MLFLOW_ADMIN_PASSWORD": "example-pass-1234"}.items())
    )
    for example, status in ((unmarked, 1), (ENV_EXAMPLE, 0)):
        command = [sys.executable, str(PREFLIGHT), "--env-file", str(env_file), "--example", str(example)]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == status and ("MLFLOW_ADMIN_PASSWORD" in result.stderr) == bool(status)
    missing = run_preflight(tmp_path, {k: v for k, v in real.items() if k != "MLFLOW_FLASK_SECRET_KEY"})
    assert missing.returncode == 1 and "MLFLOW_FLASK_SECRET_KEY is not set" in missing.stderr


def test_nothing_starts_before_the_preflight_check_passes(env_example: dict[str, str]) -> None:
    spec = service("preflight")
    command = argv(spec, "entrypoint", "command")
    assert (
        command[:2] == ["python", "/app/docker/preflight.py"] and repo_file_in_image(command[1]) == PREFLIGHT
    )
    example = command[command.index("--example") + 1]
    assert f"../.env.example:{example}:ro" in spec["volumes"], "the compared .env.example is not mounted"
    # It sees every value it checks, under its .env name, and nothing it would not check.
    checked = {name for name, value in env_example.items() if "CHANGE-ME" in value}
    checked |= {"POSTGRES_USER", "MLFLOW_ADMIN_USERNAME", "PIPELINE_MLFLOW_USERNAME"}
    assert set(environment("preflight")) == checked
    assert all(value.startswith(f"${{{key}:?") for key, value in environment("preflight").items())
    for name, other in compose()["services"].items():
        if name in one_shots():
            continue
        rule = (other.get("depends_on") or {}).get("preflight") or {}
        assert rule.get("condition") == "service_completed_successfully", f"{name} starts without preflight"


def test_the_pipeline_never_gets_admin_or_superuser_credentials(env_example: dict[str, str]) -> None:
    pipeline = environment("pipeline")
    used = {name for name, _ in references(*pipeline.values())}
    assert not used & {"MLFLOW_ADMIN_USERNAME", "MLFLOW_ADMIN_PASSWORD", "POSTGRES_USER", "POSTGRES_PASSWORD"}
    assert pipeline["MLFLOW_TRACKING_USERNAME"].startswith("${PIPELINE_MLFLOW_USERNAME:?")
    assert pipeline["MLFLOW_TRACKING_PASSWORD"].startswith("${PIPELINE_MLFLOW_PASSWORD:?")
    # The admin's password goes only to the server, the user-provisioning job and the check.
    for name in compose()["services"]:
        if "MLFLOW_ADMIN_PASSWORD" in {n for n, _ in references(*environment(name).values())}:
            assert name in {"mlflow", "mlflow-users", "preflight"}, f"{name} gets the MLflow admin password"
    users = service("mlflow-users")
    command = argv(users, "entrypoint", "command")
    assert command[:2] == ["python", "/app/docker/mlflow_pipeline_user.py"]
    assert repo_file_in_image(command[1]) == DOCKER / "mlflow_pipeline_user.py"
    configs = [command[i + 1] for i, word in enumerate(command) if word == "--config"]
    served = argv(service("pipeline"), "command")
    assert configs == [served[i + 1] for i, word in enumerate(served) if word == "--config"]
    assert environment("mlflow-users")["MLFLOW_TRACKING_USERNAME"].startswith("${MLFLOW_ADMIN_USERNAME:?")
    assert service("pipeline")["depends_on"]["mlflow-users"]["condition"] == "service_completed_successfully"


class FakeAuth:
    """Records the calls of the MLflow basic-auth client the provisioning script makes."""

    def __init__(self, existing: dict[str, bool]) -> None:
        self.users, self.calls = dict(existing), []

    def get_user(self, username: str) -> Any:
        from mlflow.exceptions import RestException

        if username not in self.users:
            raise RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": username})
        return type("User", (), {"is_admin": self.users[username]})()

    def __getattr__(self, method: str) -> Any:
        return lambda *args: self.calls.append((method, *args))


def test_the_pipeline_user_is_no_admin_and_gets_edit_only() -> None:
    import importlib.util

    from mlflow.exceptions import RestException

    spec = importlib.util.spec_from_file_location("mlflow_pipeline_user", DOCKER / "mlflow_pipeline_user.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    auth = FakeAuth({})
    module.ensure_user(auth, "retrain-pipeline", "pw")
    assert auth.calls == [("create_user", "retrain-pipeline", "pw")]
    auth = FakeAuth({"retrain-pipeline": True})  # e.g. promoted by hand: demoted again
    module.ensure_user(auth, "retrain-pipeline", "new")
    assert ("update_user_admin", "retrain-pipeline", False) in auth.calls
    assert ("update_user_password", "retrain-pipeline", "new") in auth.calls

    class Tracking:
        def __init__(self) -> None:
            self.created = []

        def get_experiment_by_name(self, name: str) -> Any:
            return type("Experiment", (), {"experiment_id": "7"})() if name == "demo" else None

        def create_experiment(self, name: str) -> str:
            self.created.append(name)
            return "8"

        def get_registered_model(self, name: str) -> Any:
            raise RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": name})

        def create_registered_model(self, name: str) -> None:
            self.created.append(name)

    names = {
        "name": "demo",
        "experiment_name": "demo",
        "monitoring_experiment": "demo-m",
        "scoring_experiment": "demo-s",
    }
    config = type("Config", (), names)
    auth, tracking = FakeAuth({}), Tracking()
    module.ensure_grants(auth, tracking, "retrain-pipeline", config)
    assert tracking.created == ["demo-m", "demo-s", "demo"], (
        "missing experiments and model are created by the admin"
    )
    assert sorted(auth.calls) == [
        ("grant_user_permission", "retrain-pipeline", "experiment", "7", "EDIT"),
        ("grant_user_permission", "retrain-pipeline", "experiment", "8", "EDIT"),
        ("grant_user_permission", "retrain-pipeline", "experiment", "8", "EDIT"),
        ("grant_user_permission", "retrain-pipeline", "registered_model", "demo", "EDIT"),
    ]
