"""Every Python block of README.md, of the documentation site (docs/, the files its pages include,
the docstrings its API reference shows), run as a user pastes it, against the fake API.

Blocks are found by pytest-examples (``find_examples``). Each is linted with ruff (pyflakes'
rules: an undefined name, an unused import or a syntax error fails a block), then run as its
fence says (```` ```python key="value" ... ````):

- no ``test=``: a script, run by the interpreter in an empty directory;
- ``test="django"``: with ``file="mysite/views.py"`` (written) or ``append="mysite/settings.py"``
  (added at the end), part of the document's one project, made by ``django-admin startproject
  mysite`` and served by ``manage.py runserver`` once ``manage.py check`` passes; without a
  file, run by ``manage.py shell -c`` in that project;
- ``test="flask"`` / ``test="asgi"`` with ``file="app.py"``: the app alone in a directory, served
  by ``flask run`` / ``uvicorn app:app``;
- ``test="pytest"``: a test module, run by pytest;
- ``test="skip"``: linted only.

``post="/signup /checkout"``: paths POSTed once the app serves, as a browser would (the visitor's
cookie, a CSRF token, a small signup form; JSON for ASGI); each must answer below 400.
``goals="signup purchase"``: the goal names the fake API must receive, each answered 2xx.

Every run has ``GOALTRACK_API_KEY`` and ``GOALTRACK_API_URL`` pointing at the fake API, as the
README's quick start says to set them; every UUID in a script is a visitor the fake API has seen.
A proxy that refuses every connection stands in for the internet, so a snippet can never reach a
real provider.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import BROWSER_UA
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.paths import REPO
from tests.support.ports import free_port

DOCUMENTS = [REPO / "README.md", REPO / "docs", REPO / "CHANGELOG.md", REPO / "goaltrack"]
"""Where the blocks are: the README; the site's pages, the file they include (the changelog) and
the docstrings of the modules its API reference renders (fences in a docstring, as in a page)."""
KINDS = ("script", "django", "flask", "asgi", "pytest", "skip")
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
CSRF_TOKEN = "readmesnippetscsrftoken000000000"  # the shape Django accepts: 32 letters or digits
FORM = {"email": "ada@example.com", "plan": "pro"}
JSON_BODY = {**FORM, "total": 29}
START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 120.0


@dataclass
class Unit:
    """What runs as one test: one block, or a document's Django project (several blocks)."""

    kind: str
    blocks: list[CodeExample]
    shell: CodeExample | None = None
    """A Django block run by ``manage.py shell`` in the project made of *blocks*."""
    project_blocks: list[CodeExample] = field(default_factory=list)

    @property
    def id(self) -> str:
        first = self.shell or self.blocks[0]
        path = first.path.relative_to(REPO)
        if self.kind == "django" and self.shell is None:
            return f"{path}:django-project"
        return f"{path}:{first.start_line}-{self.kind}"

    def setting(self, name: str) -> str | None:
        for block in [*self.blocks, *([self.shell] if self.shell else [])]:
            value = block.prefix_settings().get(name)
            if value is not None:
                return value
        return None

    def expected_goals(self) -> list[str]:
        names: list[str] = []
        for block in self.blocks if self.shell is None else [self.shell]:
            names += block.prefix_settings().get("goals", "").split()
        return sorted(names)


def kind_of(block: CodeExample) -> str:
    kind = block.prefix_settings().get("test", "script")
    if kind not in KINDS:
        raise ValueError(f"{block}: unknown test={kind!r}; one of {', '.join(KINDS)}")
    return kind


def collect_units() -> list[Unit]:
    units: list[Unit] = []
    projects: dict[Path, Unit] = {}
    shells: list[CodeExample] = []
    for block in find_examples(*DOCUMENTS):
        kind = kind_of(block)
        if kind != "django":
            units.append(Unit(kind, [block]))
            continue
        settings = block.prefix_settings()
        if "file" in settings or "append" in settings:
            projects.setdefault(block.path, Unit("django", [])).blocks.append(block)
        else:
            shells.append(block)
    units += projects.values()
    for block in shells:
        project = projects.get(block.path)
        units.append(
            Unit("django", [], shell=block, project_blocks=project.blocks if project else [])
        )
    return units


UNITS = collect_units()


def test_the_documents_have_runnable_blocks_and_few_skipped() -> None:
    kinds = [unit.kind for unit in UNITS]
    blocks = sum(len(unit.blocks) + (unit.shell is not None) for unit in UNITS)
    assert blocks >= 10
    assert {"script", "django", "flask", "asgi", "pytest"} <= set(kinds)
    assert kinds.count("skip") <= 2  # not meant to run: rare, and marked


def test_every_page_of_the_site_is_among_the_documents() -> None:
    config = (REPO / "mkdocs.yml").read_text()
    pages = re.findall(r":\s*(\S+\.md)\s*$", config, flags=re.MULTILINE)
    assert len(pages) >= 20, pages
    for page in pages:
        path = REPO / "docs" / page
        assert path.is_file(), page
        for included in re.findall(r'^--8<-- "([^"]+)"', path.read_text(), flags=re.MULTILINE):
            assert (REPO / included).resolve() in DOCUMENTS, (page, included)
        for module in re.findall(r"^::: (\S+)", path.read_text(), flags=re.MULTILINE):
            assert module.split(".")[0] == "goaltrack", (page, module)


def test_docstrings_show_no_example_that_does_not_run() -> None:
    """The API reference renders the docstrings: an example there is a fence that runs here,
    never a doctest prompt, which nothing would run."""
    prompts = [
        str(path.relative_to(REPO))
        for path in (REPO / "goaltrack").rglob("*.py")
        if re.search(r"^\s*>>> ", path.read_text(), flags=re.MULTILINE)
    ]
    assert prompts == []


# -- running ---------------------------------------------------------------------------------------


def environment(fake_api: FakeAPIServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOALTRACK_", "DJANGO_"))}
    return env | {
        "GOALTRACK_API_KEY": KEY,
        "GOALTRACK_API_URL": fake_api.api_url("datafast"),
        # Nothing leaves the machine: a request to a real provider meets a refused proxy.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }


def run(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def lint(eval_example: EvalExample, block: CodeExample) -> None:
    # A block appended to a generated file uses that file's names (INSTALLED_APPS, ...).
    appended = "append" in block.prefix_settings()
    eval_example.set_config(target_version="py311", ruff_ignore=["F821"] if appended else None)
    eval_example.lint_ruff(block)


@contextlib.contextmanager
def serving(command: list[str], cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """Run a server on a free port (``{port}`` in *command*); yield its URL once it answers."""
    port = free_port()
    log = cwd / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [part.format(port=port) for part in command],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited early:\n{log.read_text()}")
            try:
                httpx.get(url + "/", timeout=1)  # any answer: it serves
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the server did not start:\n{log.read_text()}") from None
            time.sleep(0.05)  # polling interval of a deadline-bound wait for the port to open
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def post_as_a_browser(url: str, paths: list[str], visitor: str, *, json: bool) -> None:
    cookies = {"datafast_visitor_id": visitor, "csrftoken": CSRF_TOKEN}
    headers = {"User-Agent": BROWSER_UA, "X-CSRFToken": CSRF_TOKEN}
    with httpx.Client(base_url=url, cookies=cookies, headers=headers, timeout=30) as browser:
        for path in paths:
            response = browser.post(path, json=JSON_BODY) if json else browser.post(path, data=FORM)
            assert response.status_code < 400, (path, response.status_code, response.text[:500])


def assert_goals_received(
    fake_api: FakeAPIServer, expected: list[str], visitors: set[str], log: str = ""
) -> None:
    if expected:
        fake_api.wait_for_goals(len(expected), timeout=30)
    goals = fake_api.goals
    assert sorted(goal["name"] for goal in goals) == expected, log
    assert all(goal["visitor_id"] in visitors for goal in goals), goals
    assert [r["status"] for r in fake_api.requests if r["status"] not in (200, 201)] == [], log


def write_block(root: Path, block: CodeExample) -> None:
    settings = block.prefix_settings()
    target = root / (settings.get("file") or settings["append"])
    target.parent.mkdir(parents=True, exist_ok=True)
    if "append" in settings:
        with target.open("a") as out:
            out.write("\n\n" + block.source)
    else:
        target.write_text(block.source)


def make_django_project(root: Path, blocks: list[CodeExample], env: dict[str, str]) -> Path:
    made = run([sys.executable, "-m", "django", "startproject", "mysite", str(root)], root, env)
    assert made.returncode == 0, made.stderr
    for block in blocks:
        write_block(root, block)
    return root


# -- the test ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("unit", UNITS, ids=[unit.id for unit in UNITS])
def test_block_runs_as_written(
    unit: Unit, eval_example: EvalExample, fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    for block in [*unit.project_blocks, *unit.blocks, *([unit.shell] if unit.shell else [])]:
        lint(eval_example, block)
    if unit.kind == "skip":
        return
    env = environment(fake_api)
    visitor = fake_api.add_pageview("datafast")
    paths = (unit.setting("post") or "").split()
    expected = unit.expected_goals()
    if unit.kind == "script":
        [block] = unit.blocks
        visitors = set(UUID.findall(block.source))
        for visitor_id in visitors:
            fake_api.add_pageview("datafast", visitor_id)
        (tmp_path / "snippet.py").write_text(block.source)
        result = run([sys.executable, "snippet.py"], tmp_path, env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_goals_received(fake_api, expected, visitors, result.stderr)
    elif unit.kind == "pytest":
        [block] = unit.blocks
        (tmp_path / (block.prefix_settings().get("file") or "test_snippet.py")).write_text(
            block.source
        )
        result = run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path, env
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout
        assert_goals_received(fake_api, expected, set())
    elif unit.kind == "django" and unit.shell is not None:
        project = make_django_project(tmp_path, unit.project_blocks, env)
        result = run([sys.executable, "manage.py", "shell", "-c", unit.shell.source], project, env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_goals_received(fake_api, expected, {visitor})
    elif unit.kind == "django":
        project = make_django_project(tmp_path, unit.blocks, env)
        check = run([sys.executable, "manage.py", "check"], project, env)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "goaltrack." not in check.stdout + check.stderr  # no goaltrack check complains
        command = [sys.executable, "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"]
        with serving(command, project, env) as url:
            post_as_a_browser(url, paths, visitor, json=False)
            assert_goals_received(
                fake_api, expected, {visitor}, (project / "server.log").read_text()
            )
    else:
        [block] = unit.blocks
        write_block(tmp_path, block)
        module = Path(block.prefix_settings()["file"]).stem
        if unit.kind == "flask":
            command = [sys.executable, "-m", "flask", "--app", module, "run", "--port", "{port}"]
        else:
            command = [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", "{port}"]
        with serving(command, tmp_path, env) as url:
            post_as_a_browser(url, paths, visitor, json=unit.kind == "asgi")
            assert_goals_received(
                fake_api, expected, {visitor}, (tmp_path / "server.log").read_text()
            )
