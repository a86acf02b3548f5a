#!/usr/bin/env python3
"""Runs the commands that README.md and docs/*.md show, and checks their documented output.

The pages mark what is run with HTML comments, invisible when the page is rendered; the
blocks themselves are what a reader copies. Markers (each applies to the fenced block that
follows it, except `broker` and `expect` with inline text):

  <!-- doc-test: broker [FILE] -->  before the page's first block: start canopy-broker
                                     (with --config FILE, a block saved earlier, or the
                                     built-in default) for the whole page
  <!-- doc-test: file NAME -->      save the block as NAME in the page's directory
  <!-- doc-test: start -->          run the block in the background (servers, `sub ... &`)
                                     and wait until the TCP ports its files bind accept
  <!-- doc-test: run -->            run the block; it must exit 0 (`run exit=N`: N)
  <!-- doc-test: each -->           a list of alternative commands: start each line (with
                                     its continuation lines) in the background, in order
  <!-- doc-test: sh COMMAND -->     run COMMAND (hidden set-up, such as creating a file)
  <!-- doc-test: stop -->           stop everything the page started so far (the reader's
                                     Ctrl-C before the next section)
  <!-- doc-test: console -->        a `$ command` / output transcript: run each command and
                                     check that each output line shown appears in its output
  <!-- doc-test: expect -->         every non-blank line of the block must appear in the
                                     page's output so far (waits up to 10 s)
  <!-- doc-test: expect TEXT -->    the same for TEXT
  <!-- doc-test: absent TEXT -->    TEXT must not be in the page's output so far

Rewrites, so a page runs on any machine (see tests/docs/README.md): the documented ports
(1883, 1884, 1885, 5353, 8080, 8883, 9100) become free ports; `canopy`, `mosquitto_pub` and
`mosquitto_sub` without a port get `-p <the port standing for 1883>`; `canopy-broker`
without `--config` gets a file that listens there; `cargo run [--release] -p canopy-broker`
and `cargo run [--release] -p canopy-client --` become the release binaries. In expected
output, numbers of 10 or more digits (timestamps) and DNS ids match any number.

Usage: tests/docs/run.py --bin-dir target/release [PAGE ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC_PORTS = (1883, 1884, 1885, 5353, 8080, 8883, 9100)
BLOCK_TIMEOUT = 60.0
EXPECT_TIMEOUT = 10.0
PORT_WAIT = 15.0
# Pages with nothing a reader can run on one machine in seconds, and why.
NOT_RUNNABLE = {
    "docs/architecture.md": "the broker's inner structure for contributors, no commands",
    "docs/flow-control.md": "a description of back-pressure, no commands",
    "docs/interest.md": "a design page; its measurement is metabroker/tests/interest.rs",
    "docs/mqtt-support.md": "a reference of MQTT features, no commands",
    "docs/performance.md": "benchmarks of minutes, pinned to CPUs (benches/ runs them)",
    "docs/persistence.md": "a kill -9 benchmark (benches/ and broker/tests run it)",
    "docs/security.md": (
        "its recipe writes under /etc/canopy and listens on every interface; "
        "broker/tests/security*.rs and acl.rs run the same steps on loopback"
    ),
}
MARKER = re.compile(r"^<!--\s*doc-test:\s*(\w+)\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(```+)(\S*)\s*$")


@dataclass
class Step:
    kind: str
    arg: str
    text: str
    line: int


@dataclass
class Page:
    path: Path
    steps: list[Step] = field(default_factory=list)
    broker: str | None = None


def parse(path: Path) -> Page:
    lines = path.read_text().splitlines()
    page = Page(path)
    for line in lines:
        m = MARKER.match(line.strip())
        if m and m.group(1) == "broker":
            page.broker = m.group(2)
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i].strip())
        if not m:
            i += 1
            continue
        kind, arg = m.group(1), m.group(2)
        if kind == "broker":
            i += 1
            continue
        if kind == "stop" or (kind in ("expect", "absent", "sh") and arg):
            page.steps.append(Step(kind, "", arg, i + 1))
            i += 1
            continue
        j = i + 1
        while j < len(lines) and (
            not lines[j].strip() or lines[j].strip().startswith("<!-- doc-test: broker")
        ):
            j += 1
        fence = FENCE.match(lines[j]) if j < len(lines) else None
        if not fence:
            raise SystemExit(f"{path}:{i + 1}: doc-test marker not followed by a code block")
        end = j + 1
        while end < len(lines) and lines[end].strip() != fence.group(1):
            end += 1
        page.steps.append(Step(kind, arg, "\n".join(lines[j + 1 : end]) + "\n", i + 1))
        i = end + 1
    return page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Env:
    """One page's directory, ports, wrappers and processes."""

    def __init__(self, bin_dir: Path, name: str):
        self.dir = Path(tempfile.mkdtemp(prefix=f"canopy-doc-{name}-"))
        self.ports = {p: free_port() for p in DOC_PORTS}
        self.log = self.dir / "output.log"
        self.log.touch()
        self.groups: list[int] = []
        wrap = self.dir / ".bin"
        wrap.mkdir()
        mqtt = self.ports[1883]
        default = self.dir / ".default-broker.toml"
        default.write_text(
            f'data_dir = "./canopy-data"\n[[listener]]\nbind = "127.0.0.1:{mqtt}"\n'
            '[config]\nadmins = ["admin"]\n'
        )
        real = {n: shutil.which(n) for n in ("mosquitto_pub", "mosquitto_sub")}
        scripts = {
            "canopy": f"""#!/usr/bin/env bash
real="{bin_dir}/canopy"
case " $* " in *" -p "*|*" --port "*|*" -L "*|*" --url "*) exec "$real" "$@";; esac
case "$1" in
  pub|sub) sub=$1; shift; exec "$real" "$sub" -p {mqtt} "$@";;
  config|resource|presence) a=$1; b=$2; shift 2; exec "$real" "$a" "$b" -p {mqtt} "$@";;
  *) exec "$real" "$@";;
esac
""",
            "canopy-broker": f"""#!/usr/bin/env bash
real="{bin_dir}/canopy-broker"
case " $* " in *" -c "*|*" --config "*|*" --config="*|*" -h "*|*" --help "*|*" -V "*|*" --version "*) exec "$real" "$@";; esac
exec "$real" --config "{default}" "$@"
""",
            "canopy-metabroker": f'#!/usr/bin/env bash\nexec "{bin_dir}/canopy-metabroker" "$@"\n',
        }
        for name, path in real.items():
            if path:
                scripts[name] = f"""#!/usr/bin/env bash
case " $* " in *" -p "*|*" --port "*|*" -L "*|*" --url "*) exec "{path}" "$@";; esac
exec "{path}" -p {mqtt} "$@"
"""
        for name, text in scripts.items():
            f = wrap / name
            f.write_text(text)
            f.chmod(0o755)
        self.env = dict(os.environ)
        self.env.update(
            PATH=f"{wrap}:{bin_dir}:{os.environ.get('PATH', '')}",
            HOME=str(self.dir),
            NO_COLOR="1",
            RUST_BACKTRACE="0",
        )
        self.env.pop("RUST_LOG", None)

    def subst(self, text: str) -> str:
        for doc, real in self.ports.items():
            text = re.sub(rf"(?<![0-9]){doc}(?![0-9])", str(real), text)
        text = re.sub(r"cargo run (?:--release )?-p canopy-broker(?: --)?", "canopy-broker", text)
        text = re.sub(r"cargo run (?:--release )?-p canopy-client --", "canopy", text)
        text = re.sub(r"target/release/", "", text)
        return text

    def spawn(self, script: str, out) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=self.dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.groups.append(proc.pid)
        return proc

    def bound_ports(self, text: str) -> list[int]:
        """TCP ports the block will listen on: `bind` lines of the files it names, or the
        default broker's port when it starts canopy-broker without a file."""
        ports = []
        for f in sorted(self.dir.iterdir()):
            if f.is_file() and f.suffix == ".toml" and f.name in text:
                for m in re.finditer(r'^\s*bind\s*=\s*"[^"]*:(\d+)"', f.read_text(), re.M):
                    ports.append(int(m.group(1)))
        if not ports and "canopy-broker" in text:
            ports.append(self.ports[1883])
        return ports

    def wait_ports(self, ports: list[int]) -> None:
        deadline = time.monotonic() + PORT_WAIT
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise Failure(f"nothing listens on port {port} after {PORT_WAIT:.0f} s")
                    time.sleep(0.1)

    def stop(self) -> None:
        for pgid in self.groups:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        for pgid in self.groups:
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Failure(Exception):
    pass


def pattern(line: str) -> re.Pattern:
    """An expected output line as a regex: literal, except long numbers and DNS ids."""
    out = re.escape(line.strip())
    out = re.sub(r"\d{10,}", r"\\d+", out)
    out = re.sub(r"id:\\ \d+", r"id:\\ \\d+", out)
    return re.compile(out)


def wait_for(lines: list[str], read, timeout: float) -> None:
    pats = [(l, pattern(l)) for l in lines if l.strip()]
    deadline = time.monotonic() + timeout
    while True:
        text = read()
        missing = [l for l, p in pats if not p.search(text)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise Failure("expected output not seen:\n  " + "\n  ".join(missing))
        time.sleep(0.1)


def run_page(page: Page, bin_dir: Path) -> None:
    name = page.path.stem
    env = Env(bin_dir, name)
    log = open(env.log, "ab", buffering=0)
    try:
        pending_broker = None
        if page.broker is not None:
            pending_broker = "exec canopy-broker"
        for step in page.steps:
            if step.kind == "file" and step.arg == page.broker:
                # The page's broker file, plus a listener on the port standing for 1883
                # when the file has none (it would otherwise take the real 1883).
                text = env.subst(step.text)
                if "[[listener]]" not in text:
                    text += f'\n[[listener]]\nbind = "127.0.0.1:{env.ports[1883]}"\n'
                (env.dir / ".page-broker.toml").write_text(text)
                pending_broker = "exec canopy-broker --config .page-broker.toml"
        for step in page.steps:
            if pending_broker and step.kind != "file":
                env.spawn(pending_broker, log)
                env.wait_ports(env.bound_ports(pending_broker))
                pending_broker = None
            text = env.subst(step.text)
            where = f"{page.path.relative_to(ROOT)}:{step.line}"
            try:
                if step.kind == "file":
                    (env.dir / step.arg).write_text(text)
                elif step.kind == "start":
                    env.spawn(text, log)
                    env.wait_ports(env.bound_ports(text))
                    time.sleep(0.5)  # let a background `sub` subscribe
                elif step.kind == "run":
                    want = int(step.arg.split("=", 1)[1]) if step.arg.startswith("exit=") else 0
                    proc = env.spawn(text, log)
                    try:
                        code = proc.wait(timeout=BLOCK_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        raise Failure(f"did not finish within {BLOCK_TIMEOUT:.0f} s")
                    if code != want:
                        raise Failure(f"exit status {code}, expected {want}")
                elif step.kind == "stop":
                    env.stop()
                    env.groups.clear()
                elif step.kind == "sh":
                    if env.spawn(text, log).wait(timeout=BLOCK_TIMEOUT) != 0:
                        raise Failure("set-up command failed")
                elif step.kind == "each":
                    for command in commands(text):
                        env.spawn(command, log)
                        time.sleep(0.3)
                elif step.kind == "console":
                    run_console(env, text, log)
                elif step.kind == "absent":
                    time.sleep(0.5)
                    if pattern(text).search(env.log.read_text(errors="replace")):
                        raise Failure("this should not have been printed")
                elif step.kind == "expect":
                    wait_for(text.splitlines(), lambda: env.log.read_text(errors="replace"), EXPECT_TIMEOUT)
                else:
                    raise Failure(f"unknown doc-test marker {step.kind!r}")
            except Failure as e:
                raise Failure(f"{where}: {step.kind} {step.arg}\n{text.rstrip()}\n--> {e}") from None
    except Failure as e:
        output = env.log.read_text(errors="replace")
        tail = "\n".join(output.splitlines()[-40:])
        raise Failure(f"{e}\n--- output of the page so far (last 40 lines) ---\n{tail}") from None
    finally:
        env.stop()
        log.close()
        shutil.rmtree(env.dir, ignore_errors=True)


def commands(text: str) -> list[str]:
    """The block's commands: one per line, joined with `\\` continuations; comments and
    blank lines dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line + "\n"
        if not line.rstrip().endswith("\\"):
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def run_console(env: Env, text: str, log) -> None:
    command, expected = None, []

    def flush():
        if command is None:
            return
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=env.dir,
            env=env.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=BLOCK_TIMEOUT,
        )
        out = (proc.stdout + proc.stderr).decode(errors="replace")
        log.write(f"$ {command}\n{out}".encode())
        try:
            wait_for(expected, lambda: out, 0)
        except Failure as e:
            raise Failure(f"$ {command}\n{e}\n(got: {out.strip()!r})") from None

    for line in text.splitlines():
        if line.startswith("$ "):
            flush()
            command, expected = line[2:], []
        elif command is not None:
            expected.append(line)
    flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "release")
    ap.add_argument("pages", nargs="*", type=Path)
    args = ap.parse_args()
    bin_dir = args.bin_dir.resolve()
    for b in ("canopy", "canopy-broker", "canopy-metabroker"):
        if not (bin_dir / b).is_file():
            print(f"missing {bin_dir / b}: cargo build --release -p canopy-broker -p canopy-client -p canopy-metabroker")
            return 2
    for tool, package in (("mosquitto_sub", "mosquitto-clients"), ("dig", "dnsutils")):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: apt-get install {package}")
            return 2
    pages = [p.resolve() for p in args.pages] or [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    failed = 0
    for path in pages:
        rel = str(path.relative_to(ROOT))
        page = parse(path)
        if not page.steps:
            if rel in NOT_RUNNABLE:
                print(f"-- {rel}: not run ({NOT_RUNNABLE[rel]})")
                continue
            print(f"FAIL {rel}: no doc-test blocks (mark its commands, or list it in NOT_RUNNABLE)")
            failed += 1
            continue
        started = time.monotonic()
        try:
            run_page(page, bin_dir)
            print(f"ok   {rel} ({len(page.steps)} steps, {time.monotonic() - started:.1f} s)")
        except Failure as e:
            failed += 1
            print(f"FAIL {rel}\n{e}\n")
        sys.stdout.flush()
    print(f"{len(pages) - failed} of {len(pages)} pages ok" if failed else f"all {len(pages)} pages ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
