"""A newcomer's path through a page, block by block, in one terminal (``tests/docs/shell.py``).

The session runs in the clean venv with the built wheel (the ``installed`` fixture), with a
fresh ``AIRFLOW_HOME`` and nothing else of Airflow's or xAI's set. Sybil reads the page:

* a ``bash`` block is typed as it is, after :func:`substitutions`;
* a ``python`` block that is a DAG file is saved into ``$AIRFLOW_HOME/dags/``, as the pages ask;
  any other ``python`` block is saved and run with the venv's ``python``;
* a ``text`` block is the output of the block before it: each of its lines must appear, in
  order, inside a line of that output (runs of spaces count as one);
* ``<!-- skip: next -->`` (Sybil's own marker) leaves the next block out.

After a block that starts a server in the background (a line ending in ``&``), the next block
waits until every port that block names answers HTTP.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from tests.docs.pages import is_dag_file
from tests.docs.shell import Shell
from tests.e2e.waiting import wait_while_moving
from tests.helpers.release import Installed, wheel_install
from tests.helpers.services import free_port

#: The ports the pages use: the local xAI server's and the api-server's.
PAGE_PORTS = (8765, 8080)
_BACKGROUND = re.compile(r"&\s*(?:#.*)?$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def substitutions(installed: Installed) -> dict[str, str]:
    """What the session types instead of what a page says: the only differences from a user.

    ``pip install airflow-provider-xai`` installs the built wheel with the project's constraints
    into the clean venv (which has no pip of its own), and each port a page names becomes a free
    one, so that runs beside other tests cannot collide.
    """
    install = shlex.join(map(str, wheel_install(installed.bin / "python", installed.wheel)))
    return {"pip install airflow-provider-xai": install} | {str(p): str(free_port()) for p in PAGE_PORTS}


def _squash(line: str) -> str:
    return " ".join(_ANSI.sub("", line).split())


def check_output(expected: str, output: str) -> None:
    """Each line of ``expected`` inside a line of ``output``, in order."""
    lines = [_squash(line) for line in output.splitlines()]
    at = 0
    for want in filter(None, map(_squash, expected.splitlines())):
        while at < len(lines) and want not in lines[at]:
            at += 1
        assert at < len(lines), f"not in the output, in this order: {want!r}\n--- output ---\n{output[-6000:]}"
        at += 1


@dataclass
class Flow:
    """The state of one page's session, kept in the Sybil document's namespace as ``flow``."""

    shell: Shell
    home: Path
    workdir: Path
    subs: dict[str, str]
    last_output: str | None = None
    ran: list[str] = field(default_factory=list)

    def substitute(self, text: str) -> str:
        for page_says, typed in self.subs.items():
            text = re.sub(rf"(?<![\w.-]){re.escape(page_says)}(?![\w.-])", typed, text)
        return text

    def type(self, example: Example, script: str) -> None:
        path = self.workdir / f"block-{example.line}.sh"
        path.write_text(script)
        self.last_output = self.shell.run(path)
        if _BACKGROUND.search(script):
            for port in PAGE_PORTS:
                if self.subs[str(port)] in script:
                    self._wait_for(int(self.subs[str(port)]))

    def _wait_for(self, port: int) -> None:
        def answers() -> bool:
            assert self.shell.proc.poll() is None, "the session ended"
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            return True

        wait_while_moving(answers, lambda: self.shell.output_since(0), f"a server on port {port}")


def run_bash(example: Example) -> None:
    flow: Flow = example.namespace["flow"]
    flow.type(example, flow.substitute(example.parsed))
    flow.ran.append(f"bash:{example.line}")


def run_python(example: Example) -> None:
    flow: Flow = example.namespace["flow"]
    source = flow.substitute(example.parsed)
    if is_dag_file(source):
        dags = flow.home / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        (dags / f"{Path(example.path).stem}_{example.line}.py").write_text(source)
        flow.last_output = None
        flow.ran.append(f"dag:{example.line}")
    else:
        script = flow.workdir / f"block-{example.line}.py"
        script.write_text(source)
        flow.type(example, f"python {shlex.quote(str(script))}\n")
        flow.ran.append(f"python:{example.line}")


def check_text(example: Example) -> None:
    flow: Flow = example.namespace["flow"]
    assert flow.last_output is not None, f"line {example.line}: an output block follows no command block"
    check_output(flow.substitute(example.parsed), flow.last_output)
    flow.ran.append(f"output:{example.line}")


NEWCOMER = Sybil(
    parsers=[
        CodeBlockParser("bash", run_bash),
        CodeBlockParser("python", run_python),
        CodeBlockParser("text", check_text),
        SkipParser(),
    ]
)
