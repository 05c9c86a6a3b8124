"""Throwaway PostgreSQL servers for dd's Dagster deployment and its tests.

    python deployments/postgres/pg.py start DIR [--port N]   # prints `export DD_PG_...=...` lines
    python deployments/postgres/pg.py stop DIR
    python deployments/postgres/pg.py dagster-home DIR [--llm-endpoint-limit N]

The server listens on 127.0.0.1 only, with password (scram-sha-256) auth as in production, and
no Unix socket: nothing connects that way, and a socket path inside a deep folder can exceed
the 107-byte limit. Stdlib and psutil only: no Dagster import, so it starts fast.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
USER = "dd"
DB = "dagster"
INSTALL_HINT = "install PostgreSQL's server binaries: apt-get update && apt-get install postgresql"


@dataclass(frozen=True)
class PgServer:
    data_dir: Path
    port: int
    password: str
    host: str = HOST
    user: str = USER
    db: str = DB

    @property
    def env(self) -> dict[str, str]:
        """The variables deployments/postgres/dagster.yaml reads."""
        return {
            "DD_PG_HOST": self.host,
            "DD_PG_PORT": str(self.port),
            "DD_PG_USER": self.user,
            "DD_PG_PASSWORD": self.password,
            "DD_PG_DB": self.db,
        }


def find_bindir() -> Path | None:
    """Debian's newest /usr/lib/postgresql/N/bin (initdb is not on PATH there), else PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        return Path(max(found, key=lambda p: [int(n) for n in re.findall(r"\d+", p)])).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def bindir() -> Path:
    """The server binaries; installed with apt when missing and we are root."""
    found = find_bindir()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"PostgreSQL not found: running apt-get to {INSTALL_HINT}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"], check=True, env=env)
        found = find_bindir()
    if found is None:
        raise RuntimeError(f"PostgreSQL's initdb was not found: {INSTALL_HINT}")
    return found


def as_server_user(args: list) -> list[str]:
    """PostgreSQL refuses to run as root, so root runs the server binaries as `postgres`."""
    args = [str(a) for a in args]
    if os.geteuid() != 0:
        return args
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *args]
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(args)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    args = [str(a) for a in args]
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(args)} failed ({done.returncode}):\n{done.stderr or done.stdout}")
    return done


def start(data_dir: str | Path, port: int | None = None) -> PgServer:
    """Create a cluster in the (new or empty) data_dir, start it and create the `dagster` database."""
    data_dir = Path(data_dir).resolve()
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise RuntimeError(f"{data_dir} is not empty: a throwaway server needs a fresh folder")
    bin_ = bindir()
    server = PgServer(data_dir, port or free_port(), secrets.token_urlsafe(24))
    data_dir.mkdir(parents=True, exist_ok=True)
    # initdb reads the password from a file only the server user can read, removed at once.
    fd, pwfile = tempfile.mkstemp(prefix="dd-pg-pw-")
    try:
        os.write(fd, server.password.encode() + b"\n")
        os.close(fd)
        if os.geteuid() == 0:
            shutil.chown(data_dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
            if subprocess.run(as_server_user(["test", "-w", data_dir])).returncode:
                raise RuntimeError(f"the postgres user cannot write to {data_dir}: every parent folder needs o+x")
        _run(
            as_server_user(
                [
                    bin_ / "initdb",
                    "-D",
                    data_dir,
                    "-U",
                    USER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            )
        )
    finally:
        os.unlink(pwfile)
    options = f"-c listen_addresses={HOST} -p {server.port} -c unix_socket_directories=''"
    log = data_dir / "server.log"
    try:
        _run(as_server_user([bin_ / "pg_ctl", "-D", data_dir, "-o", options, "-l", log, "-w", "-t", "60", "start"]))
        _run(
            [bin_ / "createdb", "-h", HOST, "-p", server.port, "-U", USER, DB],
            env={**os.environ, "PGPASSWORD": server.password},
        )
    except BaseException as e:
        stop(data_dir)
        if isinstance(e, RuntimeError) and log.exists():
            raise RuntimeError(f"{e}The end of {log}:\n{log.read_text()[-1500:]}") from None
        raise
    return server


def postmaster(data_dir: str | Path) -> psutil.Process | None:
    """The running server of data_dir, from its postmaster.pid (checked against reused pids)."""
    data_dir = Path(data_dir).resolve()
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        proc = psutil.Process(pid)
        if str(data_dir) in proc.cmdline():
            return proc
    except (FileNotFoundError, IndexError, ValueError, psutil.Error):
        pass
    return None


def stop(data_dir: str | Path) -> None:
    """Stop the server of data_dir, if one runs: fast shutdown, then immediate."""
    data_dir = Path(data_dir).resolve()
    if postmaster(data_dir) is None:
        return
    pg_ctl = bindir() / "pg_ctl"
    for mode in ("fast", "immediate"):
        cmd = as_server_user([pg_ctl, "-D", data_dir, "-m", mode, "-w", "-t", "30", "stop"])
        if subprocess.run(cmd, capture_output=True).returncode == 0 or postmaster(data_dir) is None:
            return
    raise RuntimeError(f"the PostgreSQL server in {data_dir} did not stop; see {data_dir / 'server.log'}")


def write_dagster_home(home: str | Path, llm_endpoint_limit: int | None = None) -> Path:
    """Copy dagster.yaml into home. Dagster types the tag limit as a plain int, which cannot
    come from `env:`, so a different limit is rendered into the copy."""
    text = (HERE / "dagster.yaml").read_text()
    if llm_endpoint_limit is not None:
        text, n = re.subn(r"(?m)^(\s+limit: )\d+$", rf"\g<1>{int(llm_endpoint_limit)}", text)
        if n != 1:
            raise ValueError("dagster.yaml should have exactly one `limit:` line")
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(text)
    return home


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start a throwaway server and print export lines")
    p_start.add_argument("dir")
    p_start.add_argument("--port", type=int)
    sub.add_parser("stop", help="stop the server of DIR, if any").add_argument("dir")
    p_home = sub.add_parser("dagster-home", help="write DIR/dagster.yaml")
    p_home.add_argument("dir")
    p_home.add_argument("--llm-endpoint-limit", type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            for name, value in start(args.dir, args.port).env.items():
                print(f"export {name}={shlex.quote(value)}")
        elif args.command == "stop":
            stop(args.dir)
        else:
            print(write_dagster_home(args.dir, args.llm_endpoint_limit))
    except RuntimeError as e:
        sys.exit(f"pg.py: {e}")


if __name__ == "__main__":
    main()
