"""scripts/prerequisites.sh (run by scripts/setup.sh) installs a missing Java 17+ or Node/npm with apt-get when
it runs as root and apt-get exists, and otherwise fails saying what to install; so for Chromium, its driver and a
CJK font (the report pages' browser tests). Run with a PATH of stubs: `id`
says who we are, `apt-get` records its calls (and "installs" by writing the stub the package provides), and
java/node/npm exist at the versions each case gives. Nothing is installed for real."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prerequisites.sh"
BASH = shutil.which("bash") or "/bin/bash"
CHMOD = shutil.which("chmod") or "/bin/chmod"
INSTALL = ["install", "-y", "--no-install-recommends"]


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


def _java(version: str) -> str:  # what `java -XshowSettings:properties -version` prints, on stderr
    return f'echo "    java.specification.version = {version}" >&2'


def _node(version: str) -> str:
    return f'echo "v{version}"'


def _run(tmp_path: Path, *, uid: int = 0, apt: bool = True, stale_lists: bool = False, apt_fails: bool = False,
         java: str | None = "17", node: str | None = "20.20.2", npm: bool = True, chromium: bool = True,
         driver: bool = True, font: bool = True) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("awk", "tail", "grep"):  # the only other programs the script runs
        (bin_dir / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "apt.log"
    _stub(bin_dir, "id", f'[ "$1" = -u ] && echo {uid}')
    if apt:
        _stub(bin_dir, "apt-get", f"""
echo "$DEBIAN_FRONTEND $*" >> {log}
{"echo 'E: Could not get lock /var/lib/dpkg/lock-frontend' >&2; exit 100" if apt_fails else ""}
if [ "$1" = install ]; then
  {"grep -q ' update' " + str(log) + " || { echo 'E: Unable to locate package' >&2; exit 100; }" if stale_lists else ""}
  for pkg in "$@"; do
    case $pkg in
      openjdk-17-jre-headless) printf '#!{BASH}\\n{_java("17")}\\n' > {bin_dir}/java; {CHMOD} +x {bin_dir}/java ;;
      nodejs) printf '#!{BASH}\\necho v18.19.0\\n' > {bin_dir}/node; {CHMOD} +x {bin_dir}/node ;;
      npm) printf '#!{BASH}\\necho 9.2.0\\n' > {bin_dir}/npm; {CHMOD} +x {bin_dir}/npm ;;
      chromium) printf '#!{BASH}\\n' > {bin_dir}/chromium; {CHMOD} +x {bin_dir}/chromium ;;
      chromium-driver) printf '#!{BASH}\\n' > {bin_dir}/chromedriver; {CHMOD} +x {bin_dir}/chromedriver ;;
      fonts-wqy-microhei) printf '#!{BASH}\\necho wqy\\n' > {bin_dir}/fc-list; {CHMOD} +x {bin_dir}/fc-list ;;
    esac
  done
fi""")
    if java:
        _stub(bin_dir, "java", _java(java))
    if node:
        _stub(bin_dir, "node", _node(node))
    if npm:
        _stub(bin_dir, "npm", "echo 10.0.0")
    if chromium:
        _stub(bin_dir, "chromium", "")
    if driver:
        _stub(bin_dir, "chromedriver", "")
    _stub(bin_dir, "fc-list", "echo 'WenQuanYi Micro Hei'" if font else "")
    done = subprocess.run([BASH, str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True, text=True,
                          timeout=30)
    calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def test_everything_present_touches_no_package_manager(tmp_path):
    done, calls = _run(tmp_path)
    assert (done.returncode, done.stdout, done.stderr, calls) == (0, "", "", [])


@pytest.mark.parametrize("java", [None, "11", "1.8"])
def test_missing_or_old_java_is_installed_as_root(tmp_path, java):
    done, calls = _run(tmp_path, java=java)
    assert done.returncode == 0, done.stderr
    assert calls == [["noninteractive", *INSTALL, "openjdk-17-jre-headless"]]


@pytest.mark.parametrize(("node", "npm", "packages"), [(None, False, ["nodejs", "npm"]), ("20.1.0", False, ["npm"]),
                                                       (None, True, ["nodejs"])])
def test_missing_node_or_npm_is_installed_as_root(tmp_path, node, npm, packages):
    done, calls = _run(tmp_path, node=node, npm=npm)
    assert done.returncode == 0, done.stderr
    assert calls == [["noninteractive", *INSTALL, *packages]]


def test_package_lists_are_updated_only_when_the_install_needs_it(tmp_path):
    done, calls = _run(tmp_path, java=None, node=None, npm=False, stale_lists=True)
    assert done.returncode == 0, done.stderr
    assert calls == [["noninteractive", *INSTALL, "openjdk-17-jre-headless"], ["noninteractive", "update"],
                     ["noninteractive", *INSTALL, "openjdk-17-jre-headless"],
                     ["noninteractive", *INSTALL, "nodejs", "npm"]]  # one update per run


@pytest.mark.parametrize("case", [dict(uid=1000), dict(apt=False)], ids=["not-root", "no-apt-get"])
def test_without_root_or_apt_it_says_what_to_install(tmp_path, case):
    done, calls = _run(tmp_path / "java", java=None, **case)
    assert done.returncode == 1 and calls == []
    assert "Java 17+ is required" in done.stderr and "apt-get install -y openjdk-17-jre-headless" in done.stderr
    done, calls = _run(tmp_path / "node", node=None, npm=False, **case)
    assert done.returncode == 1 and calls == []
    assert "apt-get install -y nodejs npm" in done.stderr


def test_too_old_node_fails_with_a_message(tmp_path):
    done, calls = _run(tmp_path, node="16.20.0")
    assert done.returncode == 1 and calls == []
    assert "Node.js 18+ is required; found v16.20.0" in done.stderr


def test_a_failed_install_stops_with_apt_gets_words(tmp_path):
    done, calls = _run(tmp_path, java=None, apt_fails=True)
    assert done.returncode == 1
    assert [c[1] for c in calls] == ["install", "update"]  # tried, updated once, gave up
    assert "Could not get lock" in done.stderr and "could not install openjdk-17-jre-headless" in done.stderr


def test_missing_browser_driver_and_font_are_installed_as_root(tmp_path):
    done, calls = _run(tmp_path, chromium=False, driver=False, font=False)
    assert done.returncode == 0, done.stderr
    assert calls == [["noninteractive", *INSTALL, "chromium", "chromium-driver", "fonts-wqy-microhei"]]


def test_only_the_missing_driver_is_installed(tmp_path):
    done, calls = _run(tmp_path, driver=False)
    assert done.returncode == 0, done.stderr
    assert calls == [["noninteractive", *INSTALL, "chromium-driver"]]


def test_missing_browser_without_root_says_what_to_install(tmp_path):
    done, calls = _run(tmp_path, uid=1000, chromium=False)
    assert done.returncode != 0 and calls == []
    assert "apt-get install -y chromium chromium-driver" in done.stderr
