"""`make package` (scripts/package.sh): the deployable stack in dist/, in one command, offline but for PyPI.

    dist/template.json            CloudFormation (SAM transform): chalice package --merge-template + infra/stack.py
    dist/artifacts/api-<h>.zip    the API: app.py, chalicelib/ (no local tooling), Chalice's runtime shim
    dist/artifacts/functions-<h>.zip   every function of functions/ with chalicelib/ (one zip, one handler each)
    dist/artifacts/layer-<h>.zip  third-party packages (Chalice's managed layer), without boto3/botocore and
                                  without the packages one function alone declares (infra/functions.json)
    dist/artifacts/<fn>-layer-<h>.zip  those packages, for that function only (e.g. numpy for rfm): manylinux
                                  wheels for Lambda's runtime, glibc and architecture (pip --platform)
    dist/package.json             what was built: sizes, hashes, the inputs' digest, each function's layers

Every .py ships with bytecode for the runtime (the Python running this, which is also the runtime Chalice
declares), written as unchecked-hash .pyc: Lambda never recompiles or stats sources on a cold start.
Zips are reproducible (sorted, fixed timestamps) and named by content, so a deploy uploads and updates only
what changed, and an older template still finds its own zips (rollback).

Fast when little changed: Chalice keeps its managed layer (pip downloads) under .local/package/project/.chalice,
keyed by requirements.txt, and the compiled layer is cached under .local/package/layers/ (a function's own layer
under .local/package/function-layers/, keyed by its pins). A build whose inputs are unchanged is skipped
altogether (ensure_built).
"""
from __future__ import annotations

import compileall
import contextlib
import fcntl
import hashlib
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import stack

ROOT = stack.ROOT
DIST = ROOT / "dist"
WORK = ROOT / ".local" / "package"
CHALICE_STAGE = "dev"  # only names things that the merge template overrides; the Stage parameter decides
DEFAULT_REGION = "ap-east-1"
FORMAT_VERSION = "1"  # bump when the post-processing changes, to invalidate the layer cache

MB = 1_000_000
MAX_OWN_CODE_BYTES = 15 * MB  # product issue: each artifact of our own code under 15 MB unzipped
MAX_WITH_LAYERS_BYTES = 250 * 1024 * 1024  # Lambda: function + layers unzipped
# Never in an artifact: provided by the Lambda runtime (boto3 & co.), local-only or test tooling.
FORBIDDEN_PACKAGES = {"boto3", "botocore", "s3transfer", "moto", "pytest", "_pytest", "hypothesis", "xdist",
                      "responses", "werkzeug", "flask", "cfnlint", "samtranslator", "importlinter", "ruff", "tests"}
RUNTIME_PROVIDED = re.compile(r"^(boto3|botocore)\b", re.IGNORECASE)
# The glibc of the Amazon Linux each Lambda Python runtime runs on: python3.9-3.11 Amazon Linux 2 (2.26),
# python3.12+ Amazon Linux 2023 (2.34). A wheel tagged for a newer glibc (manylinux_2_28) does not load there.
LAMBDA_GLIBC = {"python3.9": 26, "python3.10": 26, "python3.11": 26, "python3.12": 34, "python3.13": 34,
                "python3.14": 34}
WHEEL_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackagingError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[package] {message}", file=sys.stderr, flush=True)


# ---- inputs ----------------------------------------------------------------------------------------------------
def _own_files(base: Path, rel: str) -> Iterator[Path]:
    """Source files under base/rel that belong in an artifact: no caches, no local-only tooling."""
    top = base / rel
    for path in sorted(top.rglob("*")):
        parts = path.relative_to(base).parts
        if not path.is_file() or "__pycache__" in parts or path.suffix in (".pyc", ".pyo"):
            continue
        if parts[:2] == ("chalicelib", "local") or parts[:2] == ("chalicelib", "cli.py"):
            continue
        yield path


def input_files(root: Path = ROOT) -> list[Path]:
    files = [root / "app.py", root / "requirements.txt", root / ".chalice" / "config.json"]
    files += list(_own_files(root, "chalicelib")) + list(_own_files(root, "functions"))
    files += sorted(p for p in (root / "infra").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def inputs_digest(root: Path = ROOT) -> str:
    import chalice

    h = hashlib.sha256(f"{FORMAT_VERSION}|{sys.version}|chalice {chalice.__version__}".encode())
    for path in input_files(root):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def runtime() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


# ---- zips ------------------------------------------------------------------------------------------------------
def compile_tree(tree: Path, ddir: str, strict: bool) -> None:
    """Unchecked-hash .pyc next to every .py (in __pycache__), recorded under the path Lambda will load them from."""
    ok = compileall.compile_dir(str(tree), ddir=ddir, quiet=2, force=True, workers=0,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if strict and not ok:
        raise PackagingError(f"some files under {tree} do not compile")


def write_zip(tree: Path, out: Path) -> None:
    """Reproducible zip of a directory: sorted entries, fixed timestamps and modes."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), ZIP_TIME)
            info.create_system = 3
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes(), compresslevel=9)


def extract(zip_path: Path, into: Path) -> None:
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            parts = Path(info.filename).parts
            if info.is_dir() or "__pycache__" in parts or info.filename.endswith((".pyc", ".pyo")):
                continue
            target = into / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            if (info.external_attr >> 16) & 0o111:
                target.chmod(0o755)


def top_level_names(names: list[str], prefix: str = "") -> set[str]:
    tops = set()
    for n in names:
        if n.startswith(prefix):
            first = n[len(prefix):].split("/", 1)[0]
            tops.add(re.split(r"[-.]", first, maxsplit=1)[0].lower() if first.endswith((".dist-info", ".data"))
                     else first.removesuffix(".py").lower())
    return tops


def check_contents(kind: str, names: list[str], prefix: str = "") -> None:
    found = top_level_names(names, prefix) & FORBIDDEN_PACKAGES
    if kind != "api":
        found |= top_level_names(names, prefix) & {"chalice"}  # the runtime shim belongs to the API zip only
    local = [n for n in names if n.startswith(("chalicelib/local/", "chalicelib/cli.py"))]
    if found or local:
        raise PackagingError(f"{kind} artifact would ship {sorted(found) + local[:3]}: boto3/botocore come from "
                             "the Lambda runtime; local tooling and test tools never ship")


def artifact_info(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as z:
        infos = [i for i in z.infolist() if not i.is_dir()]
    data = path.read_bytes()
    return {"file": f"artifacts/{path.name}", "key": path.name, "sha256": hashlib.sha256(data).hexdigest(),
            "zipped_bytes": len(data), "unzipped_bytes": sum(i.file_size for i in infos), "files": len(infos),
            "py_files": sum(i.filename.endswith(".py") for i in infos),
            "pyc_files": sum(i.filename.endswith(".pyc") for i in infos)}


def named_by_content(tmp_zip: Path, kind: str, out_dir: Path) -> Path:
    digest = hashlib.sha256(tmp_zip.read_bytes()).hexdigest()[:16]
    final = out_dir / f"{kind}-{digest}.zip"
    shutil.move(tmp_zip, final)
    return final


def build_functions_zip(out_dir: Path, root: Path = ROOT) -> Path:
    with tempfile.TemporaryDirectory(prefix="chaincrm-fn-") as tmp:
        tree = Path(tmp) / "tree"
        for src in [*_own_files(root, "chalicelib"), *_own_files(root, "functions")]:
            dst = tree / src.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        compile_tree(tree, "/var/task", strict=True)
        check_contents("functions", [p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()])
        write_zip(tree, Path(tmp) / "functions.zip")
        return named_by_content(Path(tmp) / "functions.zip", "functions", out_dir)


def rebuild_api_zip(chalice_zip: Path, out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="chaincrm-api-") as tmp:
        tree = Path(tmp) / "tree"
        extract(chalice_zip, tree)
        names = [p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()]
        check_contents("api", names)
        if "app.py" not in names or "chalice/app.py" not in names:
            raise PackagingError("Chalice's deployment package lacks app.py or its runtime shim")
        compile_tree(tree, "/var/task", strict=True)
        write_zip(tree, Path(tmp) / "api.zip")
        return named_by_content(Path(tmp) / "api.zip", "api", out_dir)


def rebuild_layer_zip(chalice_zip: Path, out_dir: Path) -> Path:
    """Chalice's managed layer plus bytecode; cached by the layer's content (pip output changes rarely)."""
    key = hashlib.sha256(chalice_zip.read_bytes() + f"|{FORMAT_VERSION}|{sys.version}".encode()).hexdigest()[:24]
    cache = WORK / "layers" / f"{key}.zip"
    if not cache.exists():
        log("compiling the dependency layer (cached afterwards until requirements.txt changes)")
        with tempfile.TemporaryDirectory(prefix="chaincrm-layer-") as tmp:
            tree = Path(tmp) / "tree"
            extract(chalice_zip, tree)
            prefix = f"python/lib/{runtime()}/site-packages/"
            check_contents("layer", [p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()], prefix)
            compile_tree(tree, "/opt", strict=False)  # a stray template .py in a package may not compile
            write_zip(tree, Path(tmp) / "layer.zip")
            cache.parent.mkdir(parents=True, exist_ok=True)
            for old in cache.parent.glob("*.zip"):
                old.unlink()
            shutil.move(Path(tmp) / "layer.zip", cache)
    final = out_dir / f"layer-{hashlib.sha256(cache.read_bytes()).hexdigest()[:16]}.zip"
    shutil.copyfile(cache, final)
    return final


def wheel_platforms(runtime_name: str, architecture: str = stack.ARCHITECTURE) -> list[str]:
    """pip --platform tags that load on Lambda's runtime: manylinux_2_<n> for every glibc up to its own (pip does not
    expand these by itself), and manylinux2014 (= 2_17, which pip expands to the older 2010 and 1)."""
    if runtime_name not in LAMBDA_GLIBC:
        raise PackagingError(f"no known glibc for Lambda's {runtime_name}: add it to LAMBDA_GLIBC")
    machine = WHEEL_MACHINE[architecture]
    return [f"manylinux_2_{n}_{machine}" for n in range(LAMBDA_GLIBC[runtime_name], 17, -1)] + [
        f"manylinux2014_{machine}"]


def build_packages_layer(spec: stack.FunctionSpec, out_dir: Path) -> Path:
    """The packages only `spec` needs (e.g. numpy for rfm), as a layer: pip installs binary wheels for Lambda's
    runtime, architecture and glibc (never this machine's), with bytecode. Cached by the pins and platforms."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    platforms = wheel_platforms(runtime())
    key = hashlib.sha256(json.dumps([spec.packages, platforms, FORMAT_VERSION, sys.version]).encode()).hexdigest()
    cache = WORK / "function-layers" / f"{spec.name}-{key[:24]}.zip"
    if not cache.exists():
        log(f"installing {', '.join(spec.packages)} for {spec.name}'s layer ({platforms[0]} or older, {runtime()})")
        with tempfile.TemporaryDirectory(prefix=f"chaincrm-{spec.name}-layer-") as tmp:
            tree = Path(tmp) / "tree"
            site = tree / "python" / "lib" / runtime() / "site-packages"
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                   "--target", str(site), "--only-binary=:all:", "--implementation", "cp", "--python-version",
                   version, *(arg for tag in platforms for arg in ("--platform", tag)), *spec.packages]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
            if proc.returncode != 0:
                raise PackagingError(
                    f"{spec.name}: no wheel of {', '.join(spec.packages)} loads on Lambda's {runtime()} "
                    f"({stack.ARCHITECTURE}, glibc 2.{LAMBDA_GLIBC[runtime()]}: {platforms[0]} or older). Pin a "
                    f"version in requirements.txt that ships one.\n{proc.stdout[-1500:]}{proc.stderr[-3000:]}")
            shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts (f2py, ...): nothing runs them
            names = [p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()]
            check_contents("layer", names, f"python/lib/{runtime()}/site-packages/")
            compile_tree(tree, "/opt", strict=False)
            write_zip(tree, Path(tmp) / "layer.zip")
            cache.parent.mkdir(parents=True, exist_ok=True)
            for old in cache.parent.glob(f"{spec.name}-*.zip"):
                old.unlink()
            shutil.move(Path(tmp) / "layer.zip", cache)
    final = out_dir / f"{spec.name}-layer-{hashlib.sha256(cache.read_bytes()).hexdigest()[:16]}.zip"
    shutil.copyfile(cache, final)
    return final


def function_layers(specs: list[stack.FunctionSpec]) -> dict[str, list[str]]:
    """The artifact kinds on each function's path, in order: the shared layer, then its own."""
    return {s.name: ["layer", *([f"{s.name}-layer"] if s.packages else [])] for s in specs}


# ---- chalice ---------------------------------------------------------------------------------------------------
def stage_project(root: Path = ROOT, exclude: frozenset[str] = frozenset()) -> Path:
    """A copy of what Chalice packages, minus local tooling, and requirements without the runtime's boto3 and
    without `exclude` (the packages that functions ship in layers of their own: the API never loads them).
    Kept between runs: Chalice caches its managed layer in <project>/.chalice/deployments."""
    project = WORK / "project"
    for sub in ("chalicelib", "app.py", "requirements.txt", ".chalice/config.json"):
        target = project / sub
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (project / ".chalice").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "app.py", project / "app.py")
    shutil.copyfile(root / ".chalice" / "config.json", project / ".chalice" / "config.json")
    for src in _own_files(root, "chalicelib"):
        dst = project / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)

    def name(line: str) -> str:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        return stack.requirement_name(m.group(1)) if m else ""

    kept = [line for line in (root / "requirements.txt").read_text().splitlines()
            if not RUNTIME_PROVIDED.match(line.strip()) and name(line) not in exclude]
    (project / "requirements.txt").write_text("\n".join(kept) + "\n")
    deployments = project / ".chalice" / "deployments"
    for old in deployments.glob("appcode-*.zip"):  # rebuilt every time (cheap); the managed layer is kept
        old.unlink()
    return project


def run_chalice(project: Path, merge_template: Path, out: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAINCRM_", "AWS_ENDPOINT_URL"))}
    env.setdefault("AWS_DEFAULT_REGION", DEFAULT_REGION)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    chalice = Path(sys.executable).parent / "chalice"
    cmd = [str(chalice), "--project-dir", str(project), "package", "--stage", CHALICE_STAGE,
           "--merge-template", str(merge_template), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Could not install dependencies" in output:
        raise PackagingError(f"chalice package failed:\n{output}")
    layers = sorted((project / ".chalice" / "deployments").glob("managed-layer-*.zip"), key=lambda p: p.stat().st_mtime)
    for old in layers[:-1]:
        old.unlink()


# ---- template --------------------------------------------------------------------------------------------------
def s3_location(key: str, bucket_field: str = "Bucket", key_field: str = "Key") -> dict[str, Any]:
    return {bucket_field: {"Ref": "ArtifactBucket"}, key_field: {"Fn::Sub": "${ArtifactPrefix}" + key}}


def finalize_template(template: dict[str, Any], api_key: str, layer_key: str, api: stack.ApiSpec) -> dict[str, Any]:
    resources = template["Resources"]
    handler = resources[stack.API]["Properties"]
    handler["CodeUri"] = s3_location(api_key)
    handler.pop("Tags", None)  # Chalice's tag names its own stage ("dev"); tag the stack instead
    if handler["Role"] != {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}:
        raise PackagingError("the API's role was not replaced by infra's ApiHandlerRole")
    if handler["Runtime"] != runtime():
        raise PackagingError(f"Chalice declared {handler['Runtime']} but this build compiles for {runtime()}")
    layer = resources[stack.LAYER]["Properties"]
    layer["ContentUri"] = s3_location(layer_key)
    layer["LayerName"] = {"Fn::Sub": "${AWS::StackName}-dependencies"}
    layer["Description"] = "chaincrm third-party packages (requirements.txt without boto3), with bytecode"
    paths = resources[stack.REST_API]["Properties"]["DefinitionBody"]["paths"]
    for method, path in api.routes:
        if method.lower() not in paths.get(path, {}):
            raise PackagingError(f"infra/api.json throttles {method} {path}, which is not a route of the app")
    return stack.finalize(template)


# ---- build -----------------------------------------------------------------------------------------------------
def build(out: Path = DIST, root: Path = ROOT) -> dict[str, Any]:
    started = time.monotonic()
    specs = stack.load_functions(root=root)
    stack.check_manifest_complete(specs, root)
    api = stack.load_api()
    artifacts = out / "artifacts"
    if artifacts.exists():
        shutil.rmtree(artifacts)
    artifacts.mkdir(parents=True)

    log("zipping functions/ with chalicelib/")
    functions_zip = build_functions_zip(artifacts, root)
    own_layers = {s.name: build_packages_layer(s, artifacts) for s in specs if s.packages}
    merge = stack.build_merge_template(functions_zip.name, runtime(), root=root,
                                       layer_keys={name: z.name for name, z in own_layers.items()})
    project = stage_project(root, frozenset(stack.requirement_name(pin.split("==")[0])
                                            for s in specs for pin in s.packages))
    merge_path = WORK / "merge-template.json"
    merge_path.write_text(json.dumps(merge, indent=1))
    chalice_out = WORK / "chalice-out"
    if chalice_out.exists():
        shutil.rmtree(chalice_out)
    log("chalice package --merge-template (the managed layer is reused while requirements.txt is unchanged)")
    run_chalice(project, merge_path, chalice_out)
    api_zip = rebuild_api_zip(chalice_out / "deployment.zip", artifacts)
    layer_zip = rebuild_layer_zip(chalice_out / "layer-deployment.zip", artifacts)
    template = finalize_template(json.loads((chalice_out / "sam.json").read_text()), api_zip.name, layer_zip.name,
                                 api)
    (out / "template.json").write_text(json.dumps(template, indent=1, ensure_ascii=False) + "\n")

    info = {"api": artifact_info(api_zip), "functions": artifact_info(functions_zip), "layer": artifact_info(layer_zip)}
    info |= {f"{name}-layer": artifact_info(z) for name, z in own_layers.items()}
    for kind in ("api", "functions"):
        if info[kind]["unzipped_bytes"] > MAX_OWN_CODE_BYTES:
            raise PackagingError(f"{kind} artifact is {info[kind]['unzipped_bytes'] / MB:.1f} MB unzipped (limit 15)")
        if info[kind]["unzipped_bytes"] + info["layer"]["unzipped_bytes"] > MAX_WITH_LAYERS_BYTES:
            raise PackagingError(f"{kind} with its layer exceeds Lambda's 250 MB unzipped")
    layers = function_layers(specs)
    for name, kinds in layers.items():
        if info["functions"]["unzipped_bytes"] + sum(info[k]["unzipped_bytes"] for k in kinds) > MAX_WITH_LAYERS_BYTES:
            raise PackagingError(f"{name} with its layers ({', '.join(kinds)}) exceeds Lambda's 250 MB unzipped")
    manifest = {"inputs": inputs_digest(root), "runtime": runtime(), "template": "template.json",
                "functions": {s.name: f"{s.module}.{s.handler}" for s in specs}, "function_layers": layers,
                "artifacts": info, "seconds": round(time.monotonic() - started, 1)}
    (out / "package.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One build at a time on this machine (pytest-xdist workers share dist/)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def current(out: Path = DIST, root: Path = ROOT) -> dict[str, Any] | None:
    """The manifest of dist/ if it was built from exactly the current inputs."""
    try:
        manifest = json.loads((out / "package.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("inputs") != inputs_digest(root):
        return None
    if not (out / "template.json").exists() or not all((out / a["file"]).exists()
                                                         for a in manifest["artifacts"].values()):
        return None
    return manifest


def ensure_built(out: Path = DIST, force: bool = False) -> dict[str, Any]:
    with build_lock():
        manifest = None if force else current(out)
        if manifest is None:
            manifest = build(out)
        else:
            log(f"dist/ is up to date with the sources (inputs {manifest['inputs'][:12]}); nothing to do")
        return manifest


def summary(manifest: dict[str, Any]) -> str:
    lines = [f"dist/template.json + dist/artifacts ({manifest['runtime']}, built in {manifest['seconds']} s):"]
    for a in manifest["artifacts"].values():
        lines.append(f"  {a['key']:<34} {a['zipped_bytes'] / MB:6.2f} MB zipped {a['unzipped_bytes'] / MB:7.2f} MB "
                     f"unzipped  {a['files']:5d} files")
    lines.append("Deploy: docs/operations.md (upload dist/artifacts to the artifact bucket, then create or update "
                 "the stack with dist/template.json)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    try:
        manifest = ensure_built(force="--force" in argv)
    except (PackagingError, stack.ManifestError) as err:
        print(f"package: {err}", file=sys.stderr)
        return 1
    print(summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
