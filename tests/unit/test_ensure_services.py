"""The policy of ``scripts/ensure_services.py``: which Redis and PostgreSQL servers the tests use
or how they are installed, given what the machine has. Facts are faked; nothing is run."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from scripts import ensure_services
from scripts.apt_install import APT, SUDO_APT
from scripts.ensure_services import POSTGRES, REDIS, Fail, Install, Service, Use, decide

REDIS_BIN = "/usr/bin/redis-server"
PG_BIN = "/usr/lib/postgresql/15/bin"


@dataclass
class Facts:
    """A fake machine that records which facts ``decide`` read."""

    overrides: dict[Service, str] = field(default_factory=dict)
    overrides_work: set[Service] = field(default_factory=set)
    on_machine: dict[Service, str] = field(default_factory=dict)
    apt: bool = True
    is_root: bool = False
    sudo: bool = False
    read: list[str] = field(default_factory=list)

    def override(self, service: Service) -> str | None:
        self.read.append(f"override {service.env_var}")
        return self.overrides.get(service)

    def override_works(self, service: Service) -> bool:
        self.read.append(f"override_works {service.env_var}")
        return service in self.overrides_work

    def found(self, service: Service) -> str | None:
        self.read.append(f"found {service.env_var}")
        return self.on_machine.get(service)

    @property
    def apt_get(self) -> bool:
        self.read.append("apt_get")
        return self.apt

    @property
    def root(self) -> bool:
        self.read.append("root")
        return self.is_root

    @property
    def passwordless_sudo(self) -> bool:
        self.read.append("passwordless_sudo")
        return self.sudo


BOTH = {REDIS: REDIS_BIN, POSTGRES: PG_BIN}
PATHS = {"XAI_TEST_REDIS_SERVER": REDIS_BIN, "XAI_TEST_PG_BIN": PG_BIN}


def test_servers_on_the_machine_are_used_and_apt_is_never_asked() -> None:
    facts = Facts(on_machine=BOTH, is_root=True)
    assert decide(facts) == Use(PATHS)
    assert not {"apt_get", "root", "passwordless_sudo"} & set(facts.read)


def test_working_overrides_are_used_before_anything_is_looked_up() -> None:
    facts = Facts(
        overrides={REDIS: "/opt/redis/bin/redis-server", POSTGRES: "/opt/pg/bin"},
        overrides_work={REDIS, POSTGRES},
        on_machine=BOTH,
    )
    assert decide(facts) == Use(
        {"XAI_TEST_REDIS_SERVER": "/opt/redis/bin/redis-server", "XAI_TEST_PG_BIN": "/opt/pg/bin"}
    )
    assert not any(r.startswith("found") for r in facts.read)


def test_a_broken_override_fails_rather_than_falling_back() -> None:
    facts = Facts(overrides={POSTGRES: "/nope"}, on_machine=BOTH, is_root=True)
    decision = decide(facts)
    assert decision == Fail(
        "XAI_TEST_PG_BIN=/nope is not a directory whose initdb, postgres, pg_isready, createdb run "
        "(e.g. /usr/lib/postgresql/15/bin); unset it or point it at one"
    )
    assert "found XAI_TEST_PG_BIN" not in facts.read


@pytest.mark.parametrize(
    ("on_machine", "packages"),
    [
        ({}, ("redis-server", "postgresql")),  # a fresh CI machine: one apt-get call for both
        ({REDIS: REDIS_BIN}, ("postgresql",)),
        ({POSTGRES: PG_BIN}, ("redis-server",)),
    ],
)
def test_only_what_is_missing_is_installed(on_machine: dict[Service, str], packages: tuple[str, ...]) -> None:
    found = {s.env_var: p for s, p in on_machine.items()}
    assert decide(Facts(on_machine=on_machine, is_root=True)) == Install(APT, packages, found)


def test_sudo_is_asked_only_when_not_root() -> None:
    as_root = Facts(is_root=True, sudo=True)
    assert decide(as_root) == Install(APT, ("redis-server", "postgresql"))
    assert "passwordless_sudo" not in as_root.read
    assert decide(Facts(sudo=True)) == Install(SUDO_APT, ("redis-server", "postgresql"))


@pytest.mark.parametrize(
    ("facts", "line"),
    [
        (
            Facts(on_machine={POSTGRES: PG_BIN}),
            "no redis-server found and none can be installed (apt-get needs root or passwordless "
            "sudo): install Debian's redis-server (apt-get install redis-server) or set "
            "XAI_TEST_REDIS_SERVER",
        ),
        (
            Facts(apt=False, is_root=True),
            "no redis-server and PostgreSQL server found and none can be installed (no apt-get "
            "here): install Debian's redis-server (apt-get install redis-server) or set "
            "XAI_TEST_REDIS_SERVER; install Debian's postgresql (apt-get install postgresql) or set "
            "XAI_TEST_PG_BIN",
        ),
    ],
)
def test_one_line_when_nothing_can_work(facts: Facts, line: str) -> None:
    assert decide(facts) == Fail(line)


def test_debian_bin_dirs_newest_first_then_path_then_pg_config() -> None:
    on_path = {"postgres": "/usr/local/pgsql/bin/postgres", "initdb": "/usr/lib/postgresql/9.6/bin/initdb"}
    found = ensure_services.pg_bin_candidates(
        ["/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"],
        on_path.get,
        "/opt/pg/bin",
    )
    assert found == [
        "/usr/lib/postgresql/16/bin",
        "/usr/lib/postgresql/15/bin",
        "/usr/lib/postgresql/9.6/bin",
        "/usr/local/pgsql/bin",
        "/opt/pg/bin",
    ]


def test_redis_candidates_path_first_then_the_usual_places() -> None:
    present = {"/usr/local/bin/redis-server", "/usr/bin/redis-server"}
    which = {"redis-server": "/usr/local/bin/redis-server"}.get
    assert ensure_services.redis_candidates(which, present.__contains__) == [
        "/usr/local/bin/redis-server",
        "/usr/bin/redis-server",
    ]
    assert ensure_services.redis_candidates(lambda name: None, lambda path: False) == []


def test_shell_lines_are_quoted_for_eval() -> None:
    lines = ensure_services.shell_lines({"XAI_TEST_PG_BIN": "/opt/my pg/bin", "XAI_TEST_REDIS_SERVER": REDIS_BIN})
    assert lines == f"XAI_TEST_REDIS_SERVER={REDIS_BIN}\nXAI_TEST_PG_BIN='/opt/my pg/bin'\n"


def fake_run(
    monkeypatch: pytest.MonkeyPatch, machines: list[Facts], apt_error: str | None
) -> list[tuple[tuple[str, ...], bool]]:
    """Make ``ensure_services()`` see ``machines`` (before and after the install) and apt-get
    end with ``apt_error``; the installs asked for."""
    installs: list[tuple[tuple[str, ...], bool]] = []
    monkeypatch.setattr(ensure_services, "LiveMachine", lambda: machines.pop(0))

    def install(packages: tuple[str, ...], sudo: bool, why: str, say: object) -> str | None:
        installs.append((tuple(packages), sudo))
        return apt_error

    monkeypatch.setattr(ensure_services.apt_install, "install_with_apt", install)
    return installs


def test_an_install_is_found_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    machines = [Facts(on_machine={REDIS: REDIS_BIN}, sudo=True), Facts(on_machine=BOTH)]
    installs = fake_run(monkeypatch, machines, None)
    assert ensure_services.ensure_services() == Use(PATHS)
    assert installs == [(("postgresql",), True)]


def test_an_install_that_leaves_no_server_counts_as_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_run(monkeypatch, [Facts(is_root=True), Facts(on_machine={POSTGRES: PG_BIN})], None)
    result = ensure_services.ensure_services()
    assert isinstance(result, Fail)
    assert "installing failed (apt-get finished but no working redis-server appeared)" in result.line


def test_a_failed_apt_get_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_run(monkeypatch, [Facts(is_root=True)], "apt-get install redis-server postgresql: E: no")
    result = ensure_services.ensure_services()
    assert isinstance(result, Fail) and "\n" not in result.line
    assert result.line.startswith(
        "no redis-server and PostgreSQL server found and installing failed "
        "(apt-get install redis-server postgresql: E: no)"
    )


def test_main_prints_assignments_or_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_run(monkeypatch, [Facts(on_machine=BOTH), Facts(apt=False)], None)
    assert ensure_services.main() == 0
    assert capsys.readouterr() == (f"XAI_TEST_REDIS_SERVER={REDIS_BIN}\nXAI_TEST_PG_BIN={PG_BIN}\n", "")
    assert ensure_services.main() == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("ensure_services: no redis-server and PostgreSQL server")
