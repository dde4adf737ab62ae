"""The deployment's viewer nginx (``ohif-extension/deploy/nginx.conf``, as shipped) run on
loopback in front of a local app and Orthanc: only the listen address, the app's and Orthanc's
addresses, the document root, the grant cache's folder and Orthanc's credentials are filled in. For the security tests
and the proxy benchmark, which must exercise the same config a site deploys."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "ohif-extension" / "deploy" / "nginx.conf"
ACCEL_PREFIX = "/_orthanc"  # the internal location of CONFIG (the app's SPINEREVIEW_DICOMWEB_ACCEL)
GRANT_CACHE = "/var/cache/nginx/spinereview-pixel-grants"  # CONFIG's proxy_cache_path (the image's)


def nginx_binary() -> str | None:
    """The installed nginx, or None."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def write_config(
    folder: Path,
    *,
    port: int,
    app_port: int,
    orthanc_url: str,
    orthanc_auth: tuple[str, str],
    config: Path = CONFIG,
) -> list[str]:
    """``config`` (CONFIG, or another checkout's) filled in for loopback, written under
    ``folder``; nginx's ``-p``/``-c`` arguments. Workers run as the caller (as root, nginx would
    otherwise switch them to ``nobody``, who cannot write the grant cache under ``folder``)."""
    (folder / "html").mkdir(parents=True, exist_ok=True)
    (folder / "html" / "index.html").write_text("<html></html>")
    server = config.read_text()
    orthanc = httpx.URL(orthanc_url)
    authorization = "Basic " + base64.b64encode(":".join(orthanc_auth).encode()).decode()
    replaced = (
        server.replace("listen 80;", f"listen 127.0.0.1:{port};")
        .replace("http://web:8000", f"http://127.0.0.1:{app_port}")
        .replace("server web:8000;", f"server 127.0.0.1:{app_port};")
        .replace("server orthanc:8042;", f"server {orthanc.host}:{orthanc.port};")
        .replace("${SPINEREVIEW_ORTHANC_AUTHORIZATION}", authorization)
        .replace("root /usr/share/nginx/html;", f"root {folder / 'html'};")
        .replace(GRANT_CACHE, str(folder / "grants"))
    )
    expected = server.count("http://web:8000") + server.count("server web:8000;")
    assert replaced.count(f"127.0.0.1:{app_port}") == expected > 0
    assert "orthanc:8042" not in replaced
    assert "web:8000" not in replaced
    assert "${SPINEREVIEW" not in replaced
    assert "/var/cache" not in replaced
    (folder / "viewer.conf").write_text(replaced)
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(
        f"{user}worker_processes 1; pid {folder}/nginx.pid; error_log {folder}/error.log;\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log off; client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy;\n"
        f"  fastcgi_temp_path {folder}/fcgi; uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;\n"
        f"  include {folder}/viewer.conf; }}\n"
    )
    return ["-p", str(folder), "-c", str(folder / "nginx.conf")]


def start(binary: str, args: list[str]) -> subprocess.Popen:
    """nginx in the foreground on the written config, once its config test passes."""
    check = subprocess.run([binary, *args, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    return subprocess.Popen([binary, *args, "-g", "daemon off;"], stderr=subprocess.PIPE)
