"""A small Dockerfile reader for the static deployment tests (tests/image builds the image).

It understands what this project's Dockerfile uses: parser directives, comments, line
continuations, ``ARG``/``ENV`` with ``${VAR}`` substitution, ``FROM ... AS name``, ``RUN`` with
flags, ``COPY`` with flags, ``WORKDIR``, ``USER``, ``ENTRYPOINT``/``CMD``/``HEALTHCHECK`` in exec
form, and the ``.dockerignore`` rules. Anything else it cannot read faithfully fails loudly
(``UnsupportedDockerfile``) rather than being skipped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_DIRECTIVE = re.compile(r"^#\s*([A-Za-z]+)\s*=\s*(.*)$")


class UnsupportedDockerfile(Exception):
    """The Dockerfile uses something this reader cannot read faithfully."""


@dataclass(frozen=True)
class Instruction:
    """One instruction: upper-case keyword, ``--flag=value`` options, the rest, its line."""

    keyword: str
    flags: Mapping[str, str]
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON-array (exec form) arguments; raises if the instruction uses shell form."""
        try:
            value = json.loads(self.args)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UnsupportedDockerfile(
                f"line {self.line}: {self.keyword} must use the exec (JSON array) form"
            )
        return value


@dataclass
class Stage:
    """A build stage: ``FROM base [AS name]`` and its instructions."""

    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    """The parsed file: parser directives, global ARGs (before the first FROM), stages."""

    directives: dict[str, str]
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}")

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Expand ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` like the Dockerfile frontend."""

    def repl(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        value = env.get(name, "")
        if match.group("default") is not None and not value:
            return match.group("default")
        return value

    return _VAR.sub(repl, text)


def parse_key_values(args: str, env: Mapping[str, str], *, keyword: str) -> dict[str, str]:
    """``ENV``/``ARG``/``LABEL`` arguments: ``k=v`` pairs (quotes allowed), or legacy ``k v``."""
    words = shlex.split(args, posix=True)
    if not words:
        return {}
    if "=" not in words[0] and keyword == "ENV":  # legacy "ENV key value with spaces"
        key, _, value = args.strip().partition(" ")
        return {key: substitute(value.strip(), env)}
    pairs: dict[str, str] = {}
    scope = dict(env)
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            if keyword == "ARG":  # ARG without default
                pairs[key] = scope.get(key, "")
                continue
            raise UnsupportedDockerfile(f"{keyword}: cannot parse {word!r}")
        pairs[key] = substitute(value, scope)
        scope[key] = pairs[key]
    return pairs


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines; drop comments and blank lines. Returns (first line no, text)."""
    lines: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):  # comment inside a continuation: dropped
            continue
        if not buffer:
            start = number
        if raw.rstrip().endswith("\\"):
            buffer.append(raw.rstrip()[:-1])
            continue
        buffer.append(raw)
        lines.append((start, " ".join(part.strip() for part in buffer if part.strip())))
        buffer = []
    if buffer:
        raise UnsupportedDockerfile("the file ends inside a line continuation")
    return lines


def _split_flags(rest: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        word, _, remainder = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        if name in flags:
            raise UnsupportedDockerfile(f"repeated flag --{name} (only one of each is supported)")
        flags[name] = value
        rest = remainder.lstrip()
    return flags, rest


def parse(text: str) -> Dockerfile:
    """Parse Dockerfile text."""
    directives: dict[str, str] = {}
    for raw in text.splitlines():
        match = _DIRECTIVE.match(raw.strip())
        if not match:
            break
        directives[match.group(1).lower()] = match.group(2).strip()

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, logical in _logical_lines(text):
        keyword, _, rest = logical.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if "<<" in rest and keyword in ("RUN", "COPY"):
            raise UnsupportedDockerfile(f"line {line}: heredocs are not supported here")
        if keyword == "FROM":
            flags, rest = _split_flags(rest)
            words = rest.split()
            base = substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name, line=line))
            continue
        if not stages:
            if keyword != "ARG":
                raise UnsupportedDockerfile(f"line {line}: {keyword} before the first FROM")
            global_args.update(parse_key_values(rest, global_args, keyword="ARG"))
            continue
        flags, rest = _split_flags(rest) if keyword in ("RUN", "COPY", "ADD") else ({}, rest)
        stages[-1].instructions.append(Instruction(keyword, flags, rest, line))
    if not stages:
        raise UnsupportedDockerfile("no FROM instruction")
    return Dockerfile(directives, global_args, stages)


def load(path: Path) -> Dockerfile:
    return parse(path.read_text(encoding="utf-8"))


def stage_env(dockerfile: Dockerfile, stage: Stage, base_env: Mapping[str, str]) -> dict[str, str]:
    """The environment at the end of ``stage``: its ARGs (with defaults) and ENVs, in order.

    A stage-level ``ARG NAME`` without a default inherits the global ARG's default, as in
    Docker. ``base_env`` stands in for the base image's environment (e.g. its PATH).
    """
    env = dict(base_env)
    for instruction in stage.instructions:
        if instruction.keyword == "ARG":
            for key, value in parse_key_values(instruction.args, env, keyword="ARG").items():
                env[key] = value or dockerfile.global_args.get(key, "")
        elif instruction.keyword == "ENV":
            env.update(parse_key_values(instruction.args, env, keyword="ENV"))
    return env


def copy_sources_and_dest(
    instruction: Instruction, env: Mapping[str, str]
) -> tuple[list[str], str]:
    """COPY sources and destination (shell-like words, variables expanded)."""
    if instruction.args.startswith("["):
        words = instruction.exec_form()
    else:
        words = shlex.split(instruction.args)
    words = [substitute(w, env) for w in words]
    if len(words) < 2:
        raise UnsupportedDockerfile(f"line {instruction.line}: COPY needs a source and a dest")
    return words[:-1], words[-1]


# --- .dockerignore ------------------------------------------------------------------------------


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as an anchored regex."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1].replace("[!", "[^").replace("[^^", "[^"))
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class DockerIgnore:
    """The rules of a .dockerignore: later rules win; a rule also matches a file's parents."""

    rules: tuple[tuple[bool, re.Pattern[str]], ...]
    negated: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        negated = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = pattern.strip("/")
            pattern = re.sub(r"/+", "/", pattern).removeprefix("./")
            rules.append((negate, _glob_to_regex(pattern)))
            if negate:
                negated.append(pattern)
        return cls(tuple(rules), tuple(negated))

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether a ``!`` rule could re-include something inside an excluded directory."""
        return any(
            any(c in pattern for c in "*?[")
            or pattern == directory
            or pattern.startswith(directory + "/")
            for pattern in self.negated
        )

    def excluded(self, relpath: str) -> bool:
        parts = relpath.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negate, regex in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                excluded = not negate
        return excluded


def context_files(context: Path, ignore: DockerIgnore) -> list[str]:
    """Every regular file of the build context (relative POSIX paths) after .dockerignore."""
    files = []
    for directory, subdirs, names in os.walk(context):
        base = Path(directory).relative_to(context).as_posix()
        prefix = "" if base == "." else base + "/"
        # Prune excluded directories nothing can re-include (.git, .venv, node_modules, ...).
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not (ignore.excluded(prefix + d) and not ignore.may_reinclude_below(prefix + d))
        )
        for name in sorted(names):
            rel = prefix + name
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                continue
            if not ignore.excluded(rel):
                files.append(rel)
    return sorted(files)
