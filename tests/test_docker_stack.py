"""Static checks of the Docker stack: docker/docker-compose.yml, docker/Dockerfile, .env.example.

Docker need not run here: the compose file is parsed with PyYAML and checked against the repository
(files it mounts or builds, the CLI command and config the pipeline runs, the settings it passes to
Prefect and MLflow). `docker compose config` runs only where the compose plugin is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

REQUIRED_SERVICES = {"postgres", "prefect-server", "mlflow", "pipeline"}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "AUTH_STRING", "API_KEY", "PRIVATE_KEY")
LOOPBACK = "127.0.0.1"

# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`, `$NAME`;
# `$$` is compose's escaped dollar, left to the container's shell.
VARIABLE = re.compile(
    r"(?<!\$)\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\}|(?P<bare>[A-Za-z_]\w*))"
)


# ---- helpers ---------------------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def compose_text_without_comments() -> str:
    return "\n".join(
        line.split(" #")[0]
        for line in COMPOSE_FILE.read_text().splitlines()
        if not line.lstrip().startswith("#")
    )


def variables_in(text: str) -> set[str]:
    return {m.group("braced") or m.group("bare") for m in VARIABLE.finditer(text)}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style interpolation of one value (enough for the forms this stack uses)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        rest = match.group("rest") or ""
        current = env.get(name, "")
        if rest.startswith((":-", "-")):
            default = rest.split("-", 1)[1]
            if name not in env or (rest.startswith(":-") and not current):
                return default
        return current

    return VARIABLE.sub(substitute, value).replace("$$", "$")


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        assert "=" in stripped, f"{path.name}:{number}: not NAME=value: {line!r}"
        name, value = stripped.split("=", 1)
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f"{path.name}:{number}: bad name {name!r}"
        assert name not in values, f"{path.name}:{number}: {name} defined twice"
        values[name] = value
    return values


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def is_secret_name(name: str) -> bool:
    return any(word in name.upper() for word in SECRET_WORDS)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    instructions = []
    for item in logical:
        keyword, _, arguments = item.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context (not --from=another stage)."""
    copies = []
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY":
            continue
        parts = [p for p in arguments.split() if not p.startswith("--chown") and not p.startswith("--chmod")]
        if any(p.startswith("--from") for p in parts):
            continue
        *sources, destination = parts
        copies.append((sources, destination))
    return copies


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def image_path_to_repo(path: str) -> Path | None:
    """The repository file a path inside the image comes from, following the final stage's COPYs."""
    workdir = "/"
    final = dockerfile_stages()[-1]
    mapping: list[tuple[str, str]] = []
    for keyword, arguments in final:
        if keyword == "WORKDIR":
            workdir = arguments if arguments.startswith("/") else f"{workdir.rstrip('/')}/{arguments}"
        if keyword == "COPY" and "--from" not in arguments:
            *sources, destination = arguments.split()
            if not destination.startswith("/"):
                destination = f"{workdir.rstrip('/')}/{destination}"
            for source in sources:
                mapping.append((source.rstrip("/"), destination.rstrip("/")))
    for source, destination in mapping:
        if path == destination:
            return ROOT / source
        if path.startswith(destination + "/"):
            return ROOT / source / path[len(destination) + 1 :]
    return None


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    assert ENV_EXAMPLE.is_file(), ".env.example is missing at the repository root"
    return parse_env_file(ENV_EXAMPLE)


# ---- services, dependencies, ports -----------------------------------------------------------------


def test_every_service_of_the_stack_exists() -> None:
    missing = REQUIRED_SERVICES - set(services())
    assert not missing, f"services missing from {COMPOSE_FILE.name}: {sorted(missing)}"


def test_every_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no healthcheck"


def test_healthchecks_probe_the_right_endpoints() -> None:
    tests = {name: " ".join(as_argv(s["healthcheck"]["test"])) for name, s in services().items()}
    assert "pg_isready" in tests["postgres"]
    assert "/api/health" in tests["prefect-server"] and ":4200" in tests["prefect-server"]
    assert "/health" in tests["mlflow"] and ":5000" in tests["mlflow"]
    # The pipeline's probe is the Prefect runner's webserver, enabled in the image.
    assert ":8080/health" in tests["pipeline"]
    env = {k: v for k, v in (i[1].split("=", 1) for i in _dockerfile_env_items())}
    assert env.get("PREFECT_RUNNER_SERVER_ENABLE") == "true"
    assert env.get("PREFECT_RUNNER_SERVER_PORT", "8080") == "8080"


def test_healthcheck_script_reports_failure_and_success() -> None:
    import http.server
    import sys
    import threading

    script = DOCKER_DIR / "healthcheck.py"
    for probe in _python_healthchecks():
        assert probe[:2] == ["python", "/app/docker/healthcheck.py"], probe
    assert image_path_to_repo("/app/docker/healthcheck.py") == script

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        run = [sys.executable, str(script)]
        assert subprocess.run([*run, f"{base}/health"], capture_output=True).returncode == 0
        assert subprocess.run([*run, f"{base}/down"], capture_output=True).returncode == 1
    finally:
        server.shutdown()
    closed = subprocess.run([*run, "http://127.0.0.1:9/health"], capture_output=True, text=True)
    assert closed.returncode == 1 and "unhealthy" in closed.stderr


def _python_healthchecks() -> list[list[str]]:
    probes = [as_argv(s["healthcheck"]["test"])[1:] for s in services().values()]
    return [p for p in probes if p and p[0] == "python"]


def test_depends_on_waits_for_healthy_targets() -> None:
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must name a condition per service"
        for target, rule in depends.items():
            assert target in all_services, f"{name} depends on unknown service {target}"
            if all_services[target].get("healthcheck"):
                assert (rule or {}).get("condition") == "service_healthy", (
                    f"{name} -> {target}: {target} has a healthcheck, wait for service_healthy"
                )


def test_the_dependency_graph_of_the_issue() -> None:
    all_services = services()
    assert set(all_services["prefect-server"]["depends_on"]) == {"postgres"}
    assert set(all_services["mlflow"]["depends_on"]) == {"postgres"}
    assert {"prefect-server", "mlflow"} <= set(all_services["pipeline"]["depends_on"])


def _published_ports() -> list[tuple[str, str]]:
    ports = []
    for name, service in services().items():
        for port in service.get("ports") or []:
            ports.append((name, port if isinstance(port, str) else yaml.safe_dump(port)))
    return ports


def test_published_ports_bind_to_loopback_by_default(env_example: dict[str, str]) -> None:
    ports = _published_ports()
    assert {name for name, _ in ports} == {"prefect-server", "mlflow"}, "only the two UIs are published"
    for name, port in ports:
        assert isinstance(port, str), f"{name}: use the short 'HOST:PUBLISHED:TARGET' form, got {port}"
        host = re.match(r"^(\$\{[^}]*\}|[^:]+):", port)
        assert host, f"{name}: port {port!r} has no host address (would bind to every interface)"
        host_part = host.group(1)
        if host_part.startswith("${"):
            assert host_part.endswith(f":-{LOOPBACK}}}"), f"{name}: {port!r} must default to {LOOPBACK}"
        else:
            assert host_part == LOOPBACK, f"{name}: {port!r} binds to {host_part}"
        # As started with the example settings, too.
        assert interpolate(port, env_example).startswith(f"{LOOPBACK}:"), (name, port)
        # And with no .env at all.
        assert interpolate(port, {}).startswith(f"{LOOPBACK}:"), (name, port)
    published = {name: interpolate(port, env_example).split(":")[-1] for name, port in ports}
    assert published == {"prefect-server": "4200", "mlflow": "5000"}


def test_postgres_is_not_reachable_from_the_pipeline() -> None:
    all_services = services()
    assert not all_services["postgres"].get("ports"), "the database must not be published"
    networks = load_compose().get("networks") or {}
    db_networks = set(all_services["postgres"].get("networks") or ["default"])
    assert all(networks.get(n, {}).get("internal") for n in db_networks), "postgres: internal network only"
    assert not db_networks & set(all_services["pipeline"].get("networks") or ["default"])


# ---- variables and secrets -------------------------------------------------------------------------


def test_every_variable_is_defined_in_env_example(env_example: dict[str, str]) -> None:
    used = variables_in(compose_text_without_comments())
    assert used, "the compose file should take its settings from .env"
    missing = sorted(used - set(env_example))
    assert not missing, f"variables used by {COMPOSE_FILE.name} but not in .env.example: {missing}"


def test_env_example_has_no_unused_variables(env_example: dict[str, str]) -> None:
    unused = sorted(set(env_example) - variables_in(compose_text_without_comments()))
    assert not unused, f".env.example defines variables the compose file never uses: {unused}"


def test_env_example_secrets_are_placeholders(env_example: dict[str, str]) -> None:
    secrets = {k: v for k, v in env_example.items() if is_secret_name(k)}
    assert {"POSTGRES_PASSWORD", "PREFECT_AUTH_STRING", "MLFLOW_ADMIN_PASSWORD"} <= set(secrets)
    for name, value in secrets.items():
        assert "CHANGE-ME" in value, f".env.example: {name} must be an obvious placeholder"
    # The pipeline logs in as the admin created on the first start.
    assert env_example["MLFLOW_TRACKING_USERNAME"] == env_example["MLFLOW_ADMIN_USERNAME"]
    assert env_example["MLFLOW_TRACKING_PASSWORD"] == env_example["MLFLOW_ADMIN_PASSWORD"]
    assert re.fullmatch(r"[^:]+:.+", env_example["PREFECT_AUTH_STRING"]), "user:password"
    for name in ("PREFECT_BIND", "MLFLOW_BIND"):
        assert env_example[name] == LOOPBACK


def test_env_example_names_are_not_prefect_settings(env_example: dict[str, str]) -> None:
    """Prefect reads `.env` in the working directory: a setting here would leak into local runs."""
    valid = _prefect_setting_names()
    leaking = sorted(name for name in env_example if name in valid)
    assert not leaking, f".env.example sets Prefect settings directly: {leaking}"


def test_no_secret_literals_in_the_compose_file() -> None:
    for name, service in services().items():
        for key, value in environment_of(service).items():
            if is_secret_name(key) or re.search(r"://[^/@\s]+:[^/@\s]+@", value):
                references = VARIABLE.findall(value)
                assert references, f"{name}.{key} holds a literal secret"
                for braced, rest, _bare in references:
                    assert not rest.startswith((":-", "-")), (
                        f"{name}.{key}: ${{{braced}{rest}}} has a default value; a secret must not"
                    )
            match = re.search(r"://([^/@\s]*)@", value)
            if match and ":" in match.group(1):
                password = match.group(1).split(":", 1)[1]
                assert re.fullmatch(r"\$\{[A-Za-z_]\w*(:?\?[^}]*)?\}", password), (
                    f"{name}.{key}: the password in the URL must be a required ${{VAR}}"
                )
        for argument in as_argv(service.get("command")) + as_argv(service.get("entrypoint")):
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", argument), (
                f"{name}: credentials on the command line"
            )
    text = compose_text_without_comments()
    for word in ("password1234", "changeme", "CHANGE-ME", "secret123", "hunter2"):
        assert word.lower() not in text.lower(), f"{word!r} in the compose file"


def test_secrets_are_required_variables() -> None:
    """Without .env compose must refuse to start, not run with empty passwords."""
    required = set()
    for service in services().values():
        for value in environment_of(service).values():
            for braced, rest, _bare in VARIABLE.findall(value):
                if rest.startswith((":?", "?")):
                    required.add(braced)
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "PREFECT_AUTH_STRING", "MLFLOW_ADMIN_PASSWORD"} <= required
    assert {"MLFLOW_FLASK_SECRET_KEY", "MLFLOW_TRACKING_PASSWORD"} <= required


def test_services_get_the_credentials_they_need() -> None:
    all_services = services()
    prefect = environment_of(all_services["prefect-server"])
    url = prefect.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") or prefect.get(
        "PREFECT_API_DATABASE_CONNECTION_URL", ""
    )
    assert url.startswith("postgresql+asyncpg://") and url.endswith("@postgres:5432/prefect"), url
    assert prefect.get("PREFECT_SERVER_API_AUTH_STRING", "").startswith("${PREFECT_AUTH_STRING:?")
    command = as_argv(all_services["prefect-server"].get("entrypoint")) + as_argv(
        all_services["prefect-server"].get("command")
    )
    assert command[:3] == ["prefect", "server", "start"] and "0.0.0.0" in command

    mlflow_env = environment_of(all_services["mlflow"])
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the image ships psycopg2.
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    assert mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD")

    pipeline = environment_of(all_services["pipeline"])
    assert pipeline["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert pipeline["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert pipeline["PREFECT_API_AUTH_STRING"].startswith("${PREFECT_AUTH_STRING")
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert key in pipeline


def _prefect_setting_names() -> set[str]:
    from prefect.settings import Settings
    from prefect.settings.legacy import _get_valid_setting_names

    return set(_get_valid_setting_names(Settings))


def test_prefect_variables_are_prefect_settings() -> None:
    valid = _prefect_setting_names()
    assert "PREFECT_SERVER_API_AUTH_STRING" in valid and "PREFECT_BOGUS_SETTING" not in valid
    for name in ("prefect-server", "pipeline"):
        unknown = [k for k in environment_of(services()[name]) if k.startswith("PREFECT_") and k not in valid]
        assert not unknown, f"{name}: not Prefect settings: {unknown}"
    baked = [i[1].split("=", 1)[0] for i in _dockerfile_env_items() if i[0] == "ENV"]
    unknown = [k for k in baked if k.startswith("PREFECT_") and k not in valid]
    assert not unknown, f"Dockerfile ENV: not Prefect settings: {unknown}"


def test_mlflow_variables_are_mlflow_settings() -> None:
    import mlflow.environment_variables as mlflow_env
    from mlflow.cli import server as server_command

    known = {name for name in dir(mlflow_env) if name.startswith("MLFLOW_")}
    known |= {p.envvar for p in server_command.params if isinstance(p.envvar, str)}
    assert "MLFLOW_BACKEND_STORE_URI" in known and "MLFLOW_AUTH_ADMIN_PASSWORD" in known
    for name in ("mlflow", "pipeline"):
        unknown = [k for k in environment_of(services()[name]) if k.startswith("MLFLOW_") and k not in known]
        assert not unknown, f"{name}: not MLflow settings: {unknown}"


# ---- files the compose file refers to --------------------------------------------------------------


def test_build_context_and_dockerfile_exist() -> None:
    builds = [(n, s["build"]) for n, s in services().items() if "build" in s]
    assert {n for n, _ in builds} == {"prefect-server", "mlflow", "pipeline"}
    for name, build in builds:
        build = {"context": build} if isinstance(build, str) else build
        context = (DOCKER_DIR / build["context"]).resolve()
        assert context == ROOT, f"{name}: the build context is the repository root, got {context}"
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    images = {s.get("image") for n, s in services().items() if "build" in s}
    assert len(images) == 1, f"the three services share one image tag: {images}"


def test_mounted_files_and_env_files_exist() -> None:
    mounted = []
    for name, service in services().items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                path = (DOCKER_DIR / source).resolve()
                assert path.exists(), f"{name}: mounted {source} does not exist ({path})"
                mounted.append(path)
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            entry = {"path": env_file} if isinstance(env_file, str) else env_file
            path = DOCKER_DIR / entry["path"]
            assert path.exists() or entry.get("required") is False, f"{name}: env_file {path} missing"
    assert DOCKER_DIR / "postgres" / "init.sql" in mounted
    assert DOCKER_DIR / "mlflow" / "basic_auth.ini" in mounted


def test_named_volumes_are_declared() -> None:
    declared = set(load_compose().get("volumes") or {})
    for name, service in services().items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_postgres_init_script_creates_both_databases() -> None:
    sql = (DOCKER_DIR / "postgres" / "init.sql").read_text()
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    for database in ("prefect", "mlflow"):
        assert re.search(rf"CREATE DATABASE {database}\b", code), database
    postgres = services()["postgres"]
    assert "/docker-entrypoint-initdb.d/" in " ".join(postgres["volumes"])
    assert environment_of(postgres).get("POSTGRES_DB") not in ("prefect", "mlflow")


def test_mlflow_auth_config_is_used_and_holds_no_password() -> None:
    import configparser

    mlflow_service = services()["mlflow"]
    command = as_argv(mlflow_service.get("entrypoint")) + as_argv(mlflow_service.get("command"))
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    for flag in ("--serve-artifacts", "--artifacts-destination", "--host"):
        assert flag in command, flag
    env = environment_of(mlflow_service)
    mount = next(v for v in mlflow_service["volumes"] if v.startswith("./mlflow/basic_auth.ini:"))
    assert mount.split(":")[1] == env["MLFLOW_AUTH_CONFIG_PATH"]
    parser = configparser.ConfigParser()
    parser.read(DOCKER_DIR / "mlflow" / "basic_auth.ini")
    section = parser["mlflow"]
    assert "admin_password" not in section, "the admin password comes from .env"
    assert section["database_uri"].startswith("sqlite:////mlflow/"), "auth db on the mlflow volume"
    assert any(v.split(":")[1] == "/mlflow" for v in mlflow_service["volumes"] if not v.startswith("."))
    # MLflow reads it the way the service will.
    from mlflow.server.auth import config as auth_config

    environment = {
        "MLFLOW_AUTH_CONFIG_PATH": str(DOCKER_DIR / "mlflow" / "basic_auth.ini"),
        "MLFLOW_AUTH_ADMIN_USERNAME": "someone",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "from-the-environment",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        parsed = auth_config.read_auth_config()
    assert (parsed.admin_username, parsed.admin_password) == ("someone", "from-the-environment")


# ---- the pipeline's command and config -------------------------------------------------------------


def _dockerfile_entrypoint() -> list[str]:
    import json

    values = [a for k, a in dockerfile_instructions() if k == "ENTRYPOINT"]
    assert values, "the Dockerfile has no ENTRYPOINT"
    return json.loads(values[-1])


def test_pipeline_runs_retrain_serve_with_a_config_from_the_image() -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    pipeline = services()["pipeline"]
    argv = as_argv(pipeline.get("entrypoint")) or _dockerfile_entrypoint()
    argv = argv + as_argv(pipeline.get("command"))
    assert argv[:2] == ["retrain", "serve"], argv
    result = CliRunner().invoke(app, [*argv[1:2], "--help"])
    assert result.exit_code == 0, result.output
    assert "--config" in result.output
    config = argv[argv.index("--config") + 1]
    repo_file = image_path_to_repo(config)
    assert repo_file is not None, f"{config} is not copied into the image by the Dockerfile"
    assert repo_file.is_file(), f"{config} maps to {repo_file}, which does not exist"
    from tasks.config import load_config

    assert load_config(repo_file).name


def test_retrain_is_the_console_script_of_the_image() -> None:
    assert pyproject()["project"]["scripts"]["retrain"] == "flows.cli:main"
    assert _dockerfile_entrypoint() == ["retrain"]


# ---- the Dockerfile --------------------------------------------------------------------------------


def _dockerfile_env_items() -> list[tuple[str, str]]:
    """("ENV"/"ARG", "NAME=value") for every variable the Dockerfile defines."""
    items = []
    for keyword, arguments in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            for token in re.findall(r"""[A-Za-z_]\w*(?:=(?:"[^"]*"|'[^']*'|\S*))?""", arguments):
                items.append((keyword, token if "=" in token else f"{token}="))
    return items


def test_dockerfile_base_user_and_healthcheck() -> None:
    instructions = dockerfile_instructions()
    args = dict(i[1].split("=", 1) for i in _dockerfile_env_items() if i[0] == "ARG")
    froms = [interpolate(a.split()[0], args) for k, a in instructions if k == "FROM"]
    final_from = froms[-1]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final_from), final_from
    users = [a for k, a in dockerfile_stages()[-1] if k == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), "the image must run as a non-root user"
    healthchecks = [a for k, a in instructions if k == "HEALTHCHECK"]
    assert healthchecks and "NONE" not in healthchecks[-1].upper()


def test_dockerfile_has_no_secrets() -> None:
    for keyword, item in _dockerfile_env_items():
        name = item.split("=", 1)[0]
        assert not is_secret_name(name), f"Dockerfile {keyword} {name} looks like a secret"
    text = DOCKERFILE.read_text()
    assert not re.search(r"://[^/@\s]+:[^/@\s]+@", text), "credentials in a URL in the Dockerfile"
    for _sources, destination in dockerfile_copies():
        assert ".env" not in destination


def test_dockerfile_copies_every_package_and_installs_the_extras() -> None:
    project = pyproject()
    packages = project["tool"]["setuptools"]["packages"]
    copied = {source.rstrip("/") for sources, _ in dockerfile_copies() for source in sources}
    missing = [p for p in packages if p not in copied]
    assert not missing, f"packages of pyproject.toml not copied by the Dockerfile: {missing}"
    for sources, _ in dockerfile_copies():
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    assert "pyproject.toml" in copied and project["project"]["readme"] in copied
    installs = " ".join(a for k, a in dockerfile_instructions() if k == "RUN" and "pip install" in a)
    extras = re.search(r"\.\[([^\]]+)\]", installs)
    assert extras, "the project is not pip-installed with extras"
    wanted = {"server", "postgres"}
    assert wanted <= {e.strip() for e in extras.group(1).split(",")}
    assert wanted <= set(project["project"]["optional-dependencies"])


def test_constraints_pin_the_tested_prefect_and_mlflow() -> None:
    from importlib import metadata

    pins = dict(
        line.split("==", 1)
        for line in (DOCKER_DIR / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    lowered = {k.lower(): v for k, v in pins.items()}
    for package in ("prefect", "mlflow", "psycopg2-binary", "asyncpg", "prefect-dask", "distributed"):
        assert package in lowered, f"docker/constraints.txt does not pin {package}"
        assert lowered[package] == metadata.version(package), (
            f"{package}: image {lowered[package]} != tested {metadata.version(package)}; "
            "regenerate docker/constraints.txt (see its header)"
        )


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    for pattern in (".env", ".venv", ".retrain", ".git", "**/__pycache__"):
        assert pattern in patterns, f".dockerignore does not exclude {pattern}"
    for sources, _ in dockerfile_copies():
        for source in sources:
            assert source not in patterns, f"{source} is copied but ignored"


# ---- docker compose itself, where it is installed --------------------------------------------------


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone and subprocess.run([standalone, "version"], capture_output=True).returncode == 0:
        return [standalone]
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no `docker compose` plugin or docker-compose binary on this machine")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    # Without an env file every secret is missing: compose must refuse.
    bare = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--env-file", "/dev/null", "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bare.returncode != 0 and "POSTGRES" in bare.stderr
