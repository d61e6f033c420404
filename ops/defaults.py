"""Which stack an operator command acts on when none is named: resolved without boto3, so `--help` stays fast."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from invoice_bridge.config import EnvSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
# Written by `make deploy` (sam's guided answers) and git-ignored: one person's stack, not the team's.
USER_CONFIG = "samconfig.user.toml"
LOCAL = "local"
NO_TARGET = (
    "no target: pass --stack NAME (a deployed stack) or --local (the local stack), "
    f"or set one default: INVOICE_BRIDGE_STACK=NAME (or 'local'), or the stack_name in {USER_CONFIG} (make deploy)"
)


class LocalPort(EnvSettings):
    """The default port of `invoice-bridge local serve` (and where `send`, `wait` and the operator commands look)."""

    local_port: int = Field(default=3000, ge=0, le=65535, alias="LOCAL_PORT")


def default_local_url() -> str:
    """Where `invoice-bridge local serve` listens by default (LOCAL_PORT, else 3000)."""
    return f"http://127.0.0.1:{LocalPort.from_env().local_port}"


@dataclass(frozen=True)
class TargetSpec:
    """A named target before it is reached: a deployed stack (name, region) or the local stack (url)."""

    stack: str | None = None
    region: str | None = None
    local_url: str | None = None
    source: str = "--stack"

    @property
    def is_local(self) -> bool:
        """True for the local stack."""
        return self.local_url is not None


class NoTargetError(Exception):
    """No --stack, --local or default names the stack a command should act on."""


def user_config(root: Path | None = None) -> tuple[str | None, str | None]:
    """(stack_name, region) from the git-ignored samconfig.user.toml, when `make deploy` wrote one."""
    path = (root or REPO_ROOT) / USER_CONFIG
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise NoTargetError(f"cannot read {path}: {exc}") from None
    parameters = document.get("default", {}).get("deploy", {}).get("parameters", {})
    stack, region = parameters.get("stack_name"), parameters.get("region")
    return (str(stack) if stack else None), (str(region) if region else None)


def resolve(stack: str | None, region: str | None, local: str | None, root: Path | None = None) -> TargetSpec:
    """The target named by the flags, else by INVOICE_BRIDGE_STACK, else by samconfig.user.toml; else an error."""
    if local is not None:
        return TargetSpec(local_url=local or default_local_url(), source="--local")
    region = region or os.environ.get("INVOICE_BRIDGE_REGION") or None
    if stack:
        return TargetSpec(stack=stack, region=region or user_config(root)[1])
    named = os.environ.get("INVOICE_BRIDGE_STACK", "").strip()
    if named == LOCAL:
        return TargetSpec(local_url=default_local_url(), source="INVOICE_BRIDGE_STACK")
    if named:
        return TargetSpec(stack=named, region=region or user_config(root)[1], source="INVOICE_BRIDGE_STACK")
    saved_stack, saved_region = user_config(root)
    if saved_stack:
        return TargetSpec(stack=saved_stack, region=region or saved_region, source=USER_CONFIG)
    raise NoTargetError(NO_TARGET)
