"""The ``varnish`` fixture: a real varnishd with the xkey vmod (Debian's ``varnish`` and
``varnish-modules``) on a free loopback port, in front of the live server, running the VCL of
docs/edge.md (tests/edge/varnish.vcl); stopped by its PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.redis_server import free_port

VCL = Path(__file__).with_name("varnish.vcl")
XKEY = Path("/usr/lib/x86_64-linux-gnu/varnish/vmods/libvmod_xkey.so")


def _varnish_or_skip() -> str:
    varnishd = shutil.which("varnishd") or "/usr/sbin/varnishd"
    if os.path.exists(varnishd) and XKEY.exists():
        return varnishd
    why = "varnishd with the xkey vmod is not installed (apt-get install varnish varnish-modules)"
    if os.environ.get("CI") == "true":
        pytest.fail(why + "; CI never skips service tests")
    pytest.skip(why)


@pytest.fixture
def varnish(live_server: Any) -> Iterator[str]:
    """varnishd on a free port in front of the live server; stopped by its PID."""
    varnishd = _varnish_or_skip()
    backend_port = live_server.url.rsplit(":", 1)[1]
    with tempfile.TemporaryDirectory() as work:
        vcl = Path(work) / "freshcache.vcl"
        vcl.write_text(VCL.read_text().replace('.port = "8000";', f'.port = "{backend_port}";'))
        port = free_port()
        process = subprocess.Popen(
            [varnishd, "-F", "-j", "none", "-n", str(Path(work) / "n"), "-a",
             f"127.0.0.1:{port}", "-f", str(vcl), "-s", "malloc,16m", "-T", "none"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            _wait_for(port, process)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


NGINX_SERVER = Path(__file__).with_name("nginx.conf")


@pytest.fixture
def nginx(live_server: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx on a free port serving ``(url, root)``: the published files under ``root``, the
    rest from the live server (docs/edge.md's server block, tests/edge/nginx.conf); stopped by
    its PID."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        why = "nginx is not installed (apt-get install nginx-light)"
        if os.environ.get("CI") == "true":
            pytest.fail(why + "; CI never skips service tests")
        pytest.skip(why)
    root = tmp_path / "published"
    root.mkdir()
    port = free_port()
    backend = live_server.url.rsplit(":", 1)[1]
    server = (
        NGINX_SERVER.read_text()
        .replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")
        .replace("root /srv/www/published/$scheme/$host;", f"root {root}/$scheme/$host;")
        .replace("http://127.0.0.1:8000;", f"http://127.0.0.1:{backend};")
    )
    work = tmp_path / "nginx"
    work.mkdir()
    temps = " ".join(
        f"{name}_temp_path {work / name};" for name in ("client_body", "proxy", "fastcgi",
                                                       "uwsgi", "scgi")
    )  # fmt: skip
    conf = work / "nginx.conf"
    # As root, nginx's workers run as nobody, who cannot enter pytest's private directories.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{user}daemon off;\npid {work / 'nginx.pid'};\nerror_log {work / 'error.log'};\n"
        f"events {{}}\nhttp {{\naccess_log off;\n{temps}\n{server}\n}}\n"
    )
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(work)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for(port, process)
        yield f"http://127.0.0.1:{port}", root
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
