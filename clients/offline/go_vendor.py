#!/usr/bin/env python3
"""Write a Go module's vendor/ tree from Debian's Go sources, so that it builds in module mode
(``go build -mod=vendor``) with no module proxy: the Go proxy is unreachable on the machines that
build this repository, and Debian packages Go libraries as GOPATH sources in /usr/share/gocode.

    clients/offline/go_vendor.py MODULE_DIR [--local PATH=DIR ...]

MODULE_DIR holds the main module's go.mod; run this on a copy (the build does), because the
go.mod is changed. ``--local`` supplies a module from a directory instead of Debian (the client
module when a test application requires it, as ``go get`` would download it). The packages the
main module imports, with their tests, are listed in GOPATH mode, mapped to the modules below,
copied (without their tests) to MODULE_DIR/vendor/, and described in vendor/modules.txt the way
``go mod vendor`` writes it; modules the go.mod does not require yet are added to it as
``// indirect``, as ``go mod tidy`` would (Go 1.17+ wants every vendored module required).
Versions are those of the Debian 12 packages; a module the build needs but that is not listed
here fails with its name.

Users with network access never need this: ``go get`` fetches the same modules from the proxy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEBIAN_GOPATH = Path("/usr/share/gocode")

# Module path -> version of the Debian 12 (bookworm) package that ships it (clients/clients.mk
# installs them). genproto is a git snapshot; its version says so rather than inventing a
# pseudo-version for a commit we cannot resolve.
DEBIAN_MODULES = {
    "google.golang.org/grpc": "v1.33.3",  # golang-google-grpc-dev 1.33.3
    "google.golang.org/protobuf": "v1.28.1",  # golang-google-protobuf-dev 1.28.1
    "github.com/golang/protobuf": "v1.5.2",  # golang-github-golang-protobuf-1-5-dev 1.5.2
    "golang.org/x/net": "v0.7.0",  # golang-golang-x-net-dev 0.7.0
    "golang.org/x/sys": "v0.3.0",  # golang-golang-x-sys-dev 0.3.0
    "golang.org/x/text": "v0.7.0",  # golang-golang-x-text-dev 0.7.0
    "google.golang.org/genproto": "v0.0.0-debian.git20200413.b5235f6",  # 0.0~git20200413.b5235f6
}

REQUIRE = re.compile(r"^\s*(?:require\s+)?([\w./-]+)\s+(v\S+)", re.M)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module_dir", type=Path)
    parser.add_argument("--local", action="append", default=[], metavar="PATH=DIR")
    args = parser.parse_args()
    module_dir = args.module_dir.resolve()
    local = {path: Path(directory).resolve() for path, directory in _pairs(args.local)}
    try:
        vendor(module_dir, local)
    except VendorError as exc:
        print(f"go_vendor: {exc}", file=sys.stderr)
        return 1
    return 0


class VendorError(Exception):
    """The tree cannot be written (a package outside the known modules, go list failing)."""


def _pairs(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        path, _, directory = value.partition("=")
        if not path or not directory:
            raise SystemExit(f"go_vendor: --local wants PATH=DIR, got {value!r}")
        pairs.append((path, directory))
    return pairs


def vendor(module_dir: Path, local: dict[str, Path]) -> None:
    go_mod = (module_dir / "go.mod").read_text(encoding="utf-8")
    main_path = _module_path(go_mod)
    required = dict(REQUIRE.findall(_require_block(go_mod)))
    packages = _imported_packages(main_path, module_dir, local)

    modules: dict[str, list[tuple[str, Path]]] = {}
    for import_path, directory in packages:
        modules.setdefault(_module_of(import_path, local), []).append((import_path, directory))

    target = module_dir / "vendor"
    if target.exists():
        shutil.rmtree(target)
    indirect = {m: DEBIAN_MODULES[m] for m in sorted(modules) if m not in required}
    if indirect:
        block = "".join(f"\t{m} {v} // indirect\n" for m, v in indirect.items())
        go_mod = go_mod.rstrip("\n") + f"\n\nrequire (\n{block})\n"
        (module_dir / "go.mod").write_text(go_mod, encoding="utf-8")
        required.update(indirect)
    lines = []
    for module in sorted(modules):
        version = required[module]
        lines.append(f"# {module} {version}")
        go_version = _go_version(local.get(module) or DEBIAN_GOPATH / "src" / module)
        lines.append("## explicit" + (f"; go {go_version}" if go_version else ""))
        for import_path, directory in sorted(modules[module]):
            lines.append(import_path)
            _copy_package(directory, target / import_path)
    missing = sorted(set(required) - set(modules))
    for module in missing:  # required but no package imported: go still wants it listed
        lines.append(f"# {module} {required[module]}")
        lines.append("## explicit")
    target.mkdir(parents=True, exist_ok=True)
    (target / "modules.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _module_path(go_mod: str) -> str:
    match = re.search(r"^module\s+(\S+)", go_mod, re.M)
    if match is None:
        raise VendorError("go.mod has no module line")
    return match.group(1)


def _require_block(go_mod: str) -> str:
    blocks = re.findall(r"^require\s*\((.*?)^\)", go_mod, re.M | re.S)
    singles = re.findall(r"^require\s+[^(\s].*$", go_mod, re.M)
    return "\n".join(blocks + singles)


def _go_version(module_root: Path) -> str:
    go_mod = module_root / "go.mod"
    if not go_mod.is_file():
        return ""
    match = re.search(r"^go\s+(\d+\.\d+)", go_mod.read_text(encoding="utf-8"), re.M)
    return match.group(1) if match else ""


def _module_of(import_path: str, local: dict[str, Path]) -> str:
    roots = [*local, *DEBIAN_MODULES]
    matches = [r for r in roots if import_path == r or import_path.startswith(r + "/")]
    if not matches:
        raise VendorError(f"{import_path} is in none of the known modules (DEBIAN_MODULES)")
    return max(matches, key=len)


def _imported_packages(
    main_path: str, module_dir: Path, local: dict[str, Path]
) -> list[tuple[str, Path]]:
    """Every non-standard package the main module's packages (and their tests) import, found in
    GOPATH mode over a private GOPATH that links the main and local modules, then Debian's."""
    with tempfile.TemporaryDirectory() as gopath:
        for path, directory in {main_path: module_dir, **local}.items():
            link = Path(gopath, "src", path)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(directory)
        env = {
            **os.environ,
            "GO111MODULE": "off",
            "GOFLAGS": "",
            "GOPROXY": "off",
            "GOPATH": f"{gopath}:{DEBIAN_GOPATH}",
            "GOCACHE": os.environ.get("GOCACHE") or str(Path(gopath, "cache")),
        }
        template = "{{if not .Standard}}{{.ImportPath}}\t{{.Dir}}{{end}}"
        # Listed one by one: in GOPATH mode "path/..." does not descend into a symlink.
        own = [
            f"{main_path}/{d.relative_to(module_dir).as_posix()}".rstrip("/.")
            for d in _package_dirs(module_dir)
        ]
        go = shutil.which("go")
        if go is None:
            raise VendorError("go is not installed (make install-test-deps)")
        result = subprocess.run(  # noqa: S603 - a fixed argument list
            [go, "list", "-deps", "-test", "-f", template, *own],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise VendorError(f"go list failed:\n{result.stderr}")
        packages: dict[str, Path] = {}
        for line in result.stdout.splitlines():
            if not line.strip():
                continue
            import_path, package_dir = line.split("\t")
            import_path = import_path.split(" ")[0]  # "p [p.test]" variants of test builds
            if import_path.endswith(".test") or _inside(import_path, main_path):
                continue
            packages[import_path] = Path(os.path.realpath(package_dir))
        return sorted(packages.items())


def _package_dirs(module_dir: Path) -> list[Path]:
    """The main module's package directories: any with a .go file, outside vendor/ and testdata/."""
    found = {
        path.parent
        for path in module_dir.rglob("*.go")
        if not {"vendor", "testdata"} & set(path.relative_to(module_dir).parts)
    }
    return sorted(found)


def _inside(import_path: str, module: str) -> bool:
    return import_path == module or import_path.startswith(module + "/")


def _copy_package(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.is_file() and not entry.name.endswith("_test.go"):
            shutil.copy2(entry, target / entry.name)


if __name__ == "__main__":
    sys.exit(main())
