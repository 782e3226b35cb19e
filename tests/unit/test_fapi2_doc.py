"""docs/fapi2.md's route example, as a user pastes it into a config file: the loader accepts it
and the route it describes gets the policy the page says."""

from __future__ import annotations

import re
from pathlib import Path

from verifier.config import load_settings
from verifier.domain.model import Profile, SenderConstraint

DOC = Path(__file__).resolve().parents[2] / "docs" / "fapi2.md"


def test_the_route_example_loads_as_documented(tmp_path: Path) -> None:
    example = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert example, "docs/fapi2.md has no toml example"
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    issuer = '[[issuers]]\nissuer = "https://as.bank.example"\njwks_file = "jwks.json"\n\n'
    config = tmp_path / "config.toml"
    config.write_text(issuer + example.group(1))
    settings = load_settings(environ={"DPOP_CONFIG_FILE": str(config)})
    policy = settings.route_table().resolve("https://api.bank.example/accounts/42").policy
    assert policy.sender_constraint is SenderConstraint.EITHER
    assert policy.profile is Profile.FAPI2
    assert policy.issuers == ("https://as.bank.example",)
    other = settings.route_table().resolve("https://api.bank.example/other").policy
    assert other.sender_constraint is SenderConstraint.DPOP
