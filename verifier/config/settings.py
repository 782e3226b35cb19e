"""The one settings object: :class:`Settings`, made of typed sections that check themselves,
plus the checks that span sections."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from verifier.config.doors import DoorSettings
from verifier.config.issuers import IssuerSettings
from verifier.config.logs import LogSettings
from verifier.config.proof import ProofSettings
from verifier.config.replay import ReplaySettings
from verifier.config.server import ServerSettings
from verifier.config.values import ConfigError
from verifier.domain.model import Policy
from verifier.domain.routes import RouteError, RouteTable, parse_routes

Section = ServerSettings | ReplaySettings | ProofSettings | DoorSettings | LogSettings


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Settings:
    """Every setting of the service, validated on construction, in sections named after what
    they configure. A field of a section has the name of its option (``DPOP_REPLAY_URL`` is
    ``settings.replay.replay_url``).

    Build it with :func:`~verifier.config.load_settings`; in tests, :meth:`from_options`.
    """

    server: ServerSettings = field(default_factory=ServerSettings)
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    proof: ProofSettings = field(default_factory=ProofSettings)
    doors: DoorSettings = field(default_factory=DoorSettings)
    log: LogSettings = field(default_factory=LogSettings)
    issuers: tuple[IssuerSettings, ...] = ()
    """The config file's ``issuers`` (file only)."""
    config_file: str = ""

    SECTIONS: ClassVar[Mapping[str, type[Section]]] = {
        "server": ServerSettings,
        "replay": ReplaySettings,
        "proof": ProofSettings,
        "doors": DoorSettings,
        "log": LogSettings,
    }

    def __post_init__(self) -> None:
        self._check_request_sizes()
        self.route_table()  # the routes are checked against the proof settings
        for i, entry in enumerate(self.doors.routes):
            if entry.get("nonce_required") is True and not self.proof.nonce_secret:
                raise ConfigError(
                    f"routes[{i}].nonce_required", "needs DPOP_NONCE_SECRET (or _FILE)"
                )
        self._check_issuers()

    @classmethod
    def from_options(cls, **values: Any) -> Settings:
        """Settings from typed option values keyed by option name, each put in its section
        (``Settings.from_options(listen="[::]:0", replay_url="redis://r")``); unset options
        keep their defaults. Values are checked, not parsed. Raises :class:`ConfigError`, or
        TypeError for a name that is no option."""
        top = {k: values.pop(k) for k in ("issuers", "config_file") if k in values}
        sections: dict[str, Any] = {}
        for name, section in cls.SECTIONS.items():
            own = {f.name for f in dataclasses.fields(section)}
            sections[name] = section(**{k: values.pop(k) for k in list(values) if k in own})
        if values:
            raise TypeError(f"not a setting: {', '.join(sorted(values))}")
        return cls(**sections, **top)

    @classmethod
    def from_values(
        cls,
        raw: Mapping[str, object],
        *,
        issuers: tuple[IssuerSettings, ...] = (),
        config_file: str = "",
    ) -> Settings:
        """Settings from raw option values (strings as typed, or values from a config file):
        every section parses its values first, then each checks itself."""
        parsed = {name: section.parse(raw) for name, section in cls.SECTIONS.items()}
        sections = {name: cls.SECTIONS[name](**kwargs) for name, kwargs in parsed.items()}
        return cls(**sections, issuers=issuers, config_file=config_file)  # type: ignore[arg-type]

    def value(self, name: str) -> Any:
        """The value of the option ``name``, from whichever section holds it."""
        if name in ("issuers", "config_file"):
            return getattr(self, name)
        for section in self.SECTIONS:
            holder = getattr(self, section)
            if name in holder.__dataclass_fields__:
                return getattr(holder, name)
        raise KeyError(name)

    def route_table(self) -> RouteTable:
        """The configured routes; the default is ``require`` with the global nonce setting."""
        try:
            return parse_routes(
                self.doors.routes, default=Policy(nonce_required=self.proof.nonce_required)
            )
        except RouteError as exc:
            raise ConfigError(exc.key, exc.problem) from None

    def __repr__(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)]
        return f"Settings({', '.join(parts)})"

    __str__ = __repr__

    def _check_request_sizes(self) -> None:
        limit = self.proof.max_credential_bytes
        if self.server.http_max_header_bytes <= limit:
            raise ConfigError(
                "DPOP_HTTP_MAX_HEADER_BYTES",
                f"must exceed DPOP_MAX_PROOF_BYTES + DPOP_MAX_TOKEN_BYTES "
                f"({limit}), or such requests fail with 431",
            )
        if self.server.max_message_bytes <= limit:
            raise ConfigError(
                "DPOP_MAX_MESSAGE_BYTES",
                f"must exceed DPOP_MAX_PROOF_BYTES + DPOP_MAX_TOKEN_BYTES "
                f"({limit}), or such requests fail in transport",
            )

    def _check_issuers(self) -> None:
        seen: set[str] = set()
        for i, issuer in enumerate(self.issuers):
            issuer.check(f"issuers[{i}]")
            if issuer.issuer in seen:
                raise ConfigError(f"issuers[{i}].issuer", f"duplicate issuer {issuer.issuer!r}")
            seen.add(issuer.issuer)
        opaque = [i for i, issuer in enumerate(self.issuers) if issuer.opaque_tokens]
        if len(opaque) > 1:
            raise ConfigError(
                f"issuers[{opaque[1]}].opaque_tokens",
                "only one issuer may resolve opaque tokens (they name no issuer)",
            )
