"""Check what `sam build` produced for the zip function and its layer before it is deployed.

The build host runs Python 3.11 on a newer glibc than Lambda, so a build can silently produce
artifacts that only fail in AWS. This script checks, statically (nothing is imported):

- size: function + layers unzipped stay under Lambda's 250 MB limit;
- glibc: no ELF file needs a GLIBC symbol version newer than the runtime's (python3.13 runs on
  Amazon Linux 2023, glibc 2.34), read from `readelf -V` (binutils); every ELF file is x86-64;
- interpreter: extension modules and wheel tags are for CPython 3.13 (never cpython-311);
- weight: no TensorFlow/Keras, no copy of the runtime's boto3/botocore, no stale bytecode;
- layout: the handler module exists; the layer has python/ and the lodbrok package.

Prints a short report, writes it as JSON (default .aws-sam/artifact-report.json) and exits 1 on
any violation, 2 if it cannot run (nothing built, binutils missing).

    python scripts/check_artifacts.py [--build-dir .aws-sam/build] [--zipped]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 1024 * 1024
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000  # "250 MB": function + all layers, unzipped
RUNTIME_GLIBC = (2, 34)  # python3.13 = Amazon Linux 2023
TARGET_PYTHON = "313"
ELF_MAGIC = b"\x7fELF"
EM_X86_64 = 62
FORBIDDEN_PACKAGES = ("tensorflow", "tf_keras", "keras", "tensorboard")
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
REQUIRED_LAYER_PACKAGE = "lodbrok"

EXTENSION_RE = re.compile(r"\.cpython-(?P<version>\d+)(?P<flags>[a-z]*)-(?P<platform>[^.]+)\.so$")
BYTECODE_RE = re.compile(r"\.(?P<tag>[a-z]+-\d+)(?:\.opt-\d)?\.pyc$")
GLIBC_NEED_RE = re.compile(r"\bName: GLIBC_(\d+(?:\.\d+)+)\b")
GLIBCXX_NEED_RE = re.compile(r"\bName: GLIBCXX_(\d+(?:\.\d+)+)\b")
OBJDUMP_GLIBC_RE = re.compile(r"\bGLIBC_(\d+(?:\.\d+)+)\b")
OBJDUMP_GLIBCXX_RE = re.compile(r"\bGLIBCXX_(\d+(?:\.\d+)+)\b")
MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(?P<arch>\w+)$")
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


class CannotCheck(Exception):
    """The check itself cannot run (nothing built, a tool missing); not a finding about the artifacts."""


Version = tuple[int, ...]


def parse_version(text: str) -> Version:
    return tuple(int(part) for part in text.split("."))


def show_version(version: Version | None) -> str:
    return ".".join(map(str, version)) if version else "none"


@dataclass
class Artifact:
    """One built directory (the function, or a layer) and what the checks found in it."""

    kind: str
    name: str
    path: Path
    files: int = 0
    size: int = 0
    top_level: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        largest = sorted(self.top_level.items(), key=lambda item: item[1], reverse=True)[:8]
        return {
            "kind": self.kind,
            "name": self.name,
            "path": str(self.path),
            "files": self.files,
            "bytes": self.size,
            "mb": round(self.size / MB, 1),
            "largest": {name: round(size / MB, 1) for name, size in largest},
        }


@dataclass
class Report:
    artifacts: list[Artifact] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    elf_files: int = 0
    max_glibc: Version | None = None
    max_glibc_file: str = ""
    max_glibcxx: Version | None = None
    extension_modules: dict[str, int] = field(default_factory=dict)
    wheel_tags: dict[str, int] = field(default_factory=dict)
    bytecode_files: int = 0
    zipped_bytes: int | None = None

    @property
    def total_bytes(self) -> int:
        return sum(artifact.size for artifact in self.artifacts)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": not self.violations,
            "violations": self.violations,
            "artifacts": [artifact.summary() for artifact in self.artifacts],
            "total_unzipped_bytes": self.total_bytes,
            "total_unzipped_mb": round(self.total_bytes / MB, 1),
            "limit_unzipped_mb": round(LAMBDA_UNZIPPED_LIMIT_BYTES / MB, 1),
            "total_zipped_mb": None if self.zipped_bytes is None else round(self.zipped_bytes / MB, 1),
            "elf_files": self.elf_files,
            "max_glibc_needed": show_version(self.max_glibc),
            "max_glibc_file": self.max_glibc_file,
            "runtime_glibc": show_version(RUNTIME_GLIBC),
            "max_glibcxx_needed": show_version(self.max_glibcxx),
            "extension_modules": self.extension_modules,
            "wheel_tags": self.wheel_tags,
            "bytecode_files": self.bytecode_files,
        }


def walk_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == ELF_MAGIC


def elf_machine(path: Path) -> int:
    with path.open("rb") as handle:
        header = handle.read(20)
    byteorder = "little" if header[5] == 1 else "big"
    return int.from_bytes(header[18:20], byteorder)


class SymbolVersionReader:
    """GLIBC/GLIBCXX versions an ELF file needs, from binutils (`readelf -V`, else `objdump -T`)."""

    def __init__(self) -> None:
        self.readelf = shutil.which("readelf")
        self.objdump = shutil.which("objdump")
        if not (self.readelf or self.objdump):
            raise CannotCheck(
                "neither readelf nor objdump is installed, so the glibc versions that the shared objects need "
                "cannot be read: install binutils (apt-get install -y binutils) and run again"
            )

    def needs(self, path: Path) -> tuple[Version | None, Version | None]:
        if self.readelf:
            text = self._run([self.readelf, "-V", "--wide", str(path)])
            needed = _version_needs_section(text)
            return _highest(GLIBC_NEED_RE.findall(needed)), _highest(GLIBCXX_NEED_RE.findall(needed))
        text = self._run([str(self.objdump), "-T", str(path)])
        return _highest(OBJDUMP_GLIBC_RE.findall(text)), _highest(OBJDUMP_GLIBCXX_RE.findall(text))

    @staticmethod
    def _run(command: list[str]) -> str:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise CannotCheck(f"{' '.join(command)} failed: {completed.stderr.strip()}")
        return completed.stdout


def _version_needs_section(readelf_output: str) -> str:
    """The `.gnu.version_r` part of `readelf -V`: the symbol versions the file requires."""
    lines, inside = [], False
    for line in readelf_output.splitlines():
        if line.startswith("Version needs section"):
            inside = True
        elif line.startswith("Version ") and "section" in line:
            inside = False
        elif inside:
            lines.append(line)
    return "\n".join(lines)


def _highest(versions: list[str]) -> Version | None:
    return max((parse_version(version) for version in versions), default=None)


def check_artifact(artifact: Artifact, reader: SymbolVersionReader, report: Report) -> None:
    root = artifact.path
    for path in walk_files(root):
        relative = path.relative_to(root)
        size = path.stat().st_size
        artifact.files += 1
        artifact.size += size
        top = _top_level_name(relative, artifact.kind)
        artifact.top_level[top] = artifact.top_level.get(top, 0) + size
        where = f"{artifact.name}/{relative}"

        if path.suffix == ".pyc":
            report.bytecode_files += 1
            match = BYTECODE_RE.search(path.name)
            tag = match.group("tag") if match else "untagged"
            if tag != f"cpython-{TARGET_PYTHON}":
                report.violations.append(
                    f"{where}: {tag} bytecode, useless on python3.13 (build with pip --no-compile; "
                    "do not copy __pycache__)"
                )

        extension = EXTENSION_RE.search(path.name)
        if extension:
            label = f"cpython-{extension['version']}{extension['flags']}-{extension['platform']}"
            report.extension_modules[label] = report.extension_modules.get(label, 0) + 1
            if extension["version"] != TARGET_PYTHON or extension["flags"]:
                report.violations.append(f"{where}: extension module for {label}, not CPython 3.13")
            elif extension["platform"] != "x86_64-linux-gnu":
                report.violations.append(f"{where}: extension module for {extension['platform']}, not x86_64 Linux")

        if path.name == "WHEEL" and path.parent.name.endswith(".dist-info"):
            check_wheel_tags(path, where, report)

        if size >= 4 and is_elf(path):
            report.elf_files += 1
            if elf_machine(path) != EM_X86_64:
                report.violations.append(f"{where}: ELF file for machine {elf_machine(path)}, not x86-64")
            glibc, glibcxx = reader.needs(path)
            if glibc and (report.max_glibc is None or glibc > report.max_glibc):
                report.max_glibc, report.max_glibc_file = glibc, where
            if glibcxx and (report.max_glibcxx is None or glibcxx > report.max_glibcxx):
                report.max_glibcxx = glibcxx
            if glibc and glibc > RUNTIME_GLIBC:
                report.violations.append(
                    f"{where}: needs GLIBC_{show_version(glibc)}, the python3.13 runtime has glibc "
                    f"{show_version(RUNTIME_GLIBC)} (pick an older manylinux wheel)"
                )

    check_packages(artifact, report)


def _top_level_name(relative: Path, kind: str) -> str:
    parts = relative.parts
    if kind == "layer" and len(parts) > 2 and parts[0] == "python":
        return parts[1]
    return parts[0] if len(parts) > 1 else str(relative)


def check_wheel_tags(path: Path, where: str, report: Report) -> None:
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("Tag:"):
            continue
        tag = line.split(":", 1)[1].strip()
        report.wheel_tags[tag] = report.wheel_tags.get(tag, 0) + 1
        interpreter, abi, platform = [*tag.split("-"), "", "", ""][:3]
        if interpreter.startswith("cp") and abi.startswith("cp") and interpreter != f"cp{TARGET_PYTHON}":
            report.violations.append(f"{where}: wheel tag {tag} is for another CPython than 3.13")
        for single in platform.split("."):
            problem = _platform_problem(single)
            if problem:
                report.violations.append(f"{where}: wheel tag {tag}: {problem}")


def _platform_problem(platform: str) -> str:
    if platform in ("any", ""):
        return ""
    legacy = next((name for name in LEGACY_MANYLINUX if platform.startswith(name + "_")), None)
    if legacy:
        glibc, arch = LEGACY_MANYLINUX[legacy], platform[len(legacy) + 1 :]
    elif match := MANYLINUX_RE.match(platform):
        glibc, arch = (int(match.group(1)), int(match.group(2))), match["arch"]
    else:
        return f"platform {platform} is not a manylinux x86_64 platform"
    if arch != "x86_64":
        return f"platform {platform} is not x86_64"
    if glibc > RUNTIME_GLIBC:
        return f"platform {platform} needs glibc {show_version(glibc)} > {show_version(RUNTIME_GLIBC)}"
    return ""


def check_packages(artifact: Artifact, report: Report) -> None:
    site = artifact.path / "python" if artifact.kind == "layer" else artifact.path
    names = [entry.name for entry in site.iterdir()] if site.is_dir() else []
    for name in names:
        normalized = name.lower().replace("-", "_")  # package dir, module or <name>-<version>.dist-info
        if any(normalized == bad or normalized.startswith(bad + "_") for bad in FORBIDDEN_PACKAGES):
            report.violations.append(
                f"{artifact.name}: ships {name}; TensorFlow/Keras belong only in the retrain container image"
            )
        if any(normalized == provided or normalized.startswith(provided + "_") for provided in RUNTIME_PROVIDED):
            report.violations.append(
                f"{artifact.name}: ships {name}, which the Lambda runtime provides; a copy in the artifact shadows "
                "the runtime's boto3/botocore pair (remove it in the Makefile)"
            )
    if artifact.kind == "layer":
        if not site.is_dir():
            report.violations.append(f"{artifact.name}: no python/ directory, so Lambda would not put it on sys.path")
        elif not (site / REQUIRED_LAYER_PACKAGE / "__init__.py").is_file():
            report.violations.append(f"{artifact.name}: python/{REQUIRED_LAYER_PACKAGE}/__init__.py is missing")


def zipped_size(directories: list[Path]) -> int:
    """Bytes of the deflated zips that `sam deploy` would upload (for information)."""
    total = 0
    for directory in directories:
        sink = _CountingSink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in walk_files(directory):
                archive.write(path, path.relative_to(directory))
        total += sink.count
    return total


class _CountingSink(io.RawIOBase):
    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.count += len(data)
        return len(data)


def run_checks(build_dir: Path, function: str, handler: str, layers: list[str], zipped: bool) -> Report:
    if not build_dir.is_dir():
        raise CannotCheck(f"{build_dir} does not exist: run `make build` (sam build PredictFunction) first")
    artifacts = [Artifact("function", function, build_dir / function)]
    artifacts += [Artifact("layer", layer, build_dir / layer) for layer in layers]
    missing = [str(artifact.path) for artifact in artifacts if not artifact.path.is_dir()]
    if missing:
        raise CannotCheck(f"not built: {', '.join(missing)}; run `make build` first")

    reader = SymbolVersionReader()
    report = Report(artifacts=artifacts)
    for artifact in artifacts:
        check_artifact(artifact, reader, report)

    module = handler.rsplit(".", 1)[0].replace(".", "/")
    if not (build_dir / function / f"{module}.py").is_file():
        report.violations.append(f"{function}: handler {handler} needs {module}.py at the top of the function")
    if report.total_bytes >= LAMBDA_UNZIPPED_LIMIT_BYTES:
        report.violations.append(
            f"function + layers are {report.total_bytes / MB:.1f} MB unzipped; Lambda allows "
            f"{LAMBDA_UNZIPPED_LIMIT_BYTES / MB:.0f} MB"
        )
    if zipped:
        report.zipped_bytes = zipped_size([artifact.path for artifact in artifacts])
    return report


def print_report(report: Report, build_dir: Path, out: Any = sys.stdout) -> None:
    print(f"Lambda artifacts in {build_dir}:", file=out)
    for artifact in report.artifacts:
        summary = artifact.summary()
        largest = ", ".join(f"{name} {size}" for name, size in list(summary["largest"].items())[:5])
        print(
            f"  {artifact.kind:8} {artifact.name:16} {summary['mb']:7.1f} MB  {artifact.files:5} files  {largest}",
            file=out,
        )
    total = f"  total unzipped {report.total_bytes / MB:.1f} MB (limit {LAMBDA_UNZIPPED_LIMIT_BYTES / MB:.0f} MB)"
    if report.zipped_bytes is not None:
        total += f", zipped {report.zipped_bytes / MB:.1f} MB"
    print(total, file=out)
    print(
        f"  {report.elf_files} ELF files; highest glibc needed {show_version(report.max_glibc)} "
        f"({report.max_glibc_file or '-'}), runtime has {show_version(RUNTIME_GLIBC)}; "
        f"highest GLIBCXX {show_version(report.max_glibcxx)}",
        file=out,
    )
    modules = ", ".join(f"{count} {label}" for label, count in sorted(report.extension_modules.items())) or "none"
    print(f"  extension modules: {modules}; bytecode files: {report.bytecode_files}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=Path(".aws-sam/build"), help="sam build output")
    parser.add_argument("--function", default="PredictFunction", help="logical id of the zip function")
    parser.add_argument("--handler", default="app.lambda_handler", help="the function's Handler")
    parser.add_argument("--layer", action="append", dest="layers", help="logical id of a layer (repeatable)")
    parser.add_argument("--report", type=Path, help="JSON report path (default: <build-dir>/../artifact-report.json)")
    parser.add_argument("--zipped", action="store_true", help="also measure the zipped size (a few seconds)")
    arguments = parser.parse_args(argv)
    build_dir = arguments.build_dir
    report_path = arguments.report or build_dir.parent / "artifact-report.json"

    try:
        report = run_checks(
            build_dir, arguments.function, arguments.handler, arguments.layers or ["ModelLayer"], arguments.zipped
        )
    except CannotCheck as error:
        print(f"check_artifacts: cannot check: {error}", file=sys.stderr)
        return 2

    print_report(report, build_dir)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    if report.violations:
        print(f"FAIL: {len(report.violations)} violation(s):", file=sys.stderr)
        for violation in report.violations:
            print(f"  - {violation}", file=sys.stderr)
        print(f"(report: {report_path})", file=sys.stderr)
        return 1
    print(f"OK (report: {report_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
