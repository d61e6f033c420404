"""The docs a clone holds stand alone and their commands work as written."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from sandbox.cli import build_parser
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Things a clone does not contain: the design notes and API references the project was specified from.
OUTSIDE = re.compile(r"DESIGN\.md|shared folder|\.\./shared|/work/|seeds/", re.IGNORECASE)
AWS_COMMAND = re.compile(r"(?:^|[\s`$(])aws [a-z0-9-]+ [a-z0-9-]+")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of `parser` by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def shell_commands(text: str) -> list[str]:
    """Commands in fenced `sh` blocks (continuation lines joined) and in inline code spans."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        commands.extend(re.sub(r"\\\n\s*", " ", block).splitlines())
    commands.extend(re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL)))
    return commands


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_doc_points_outside_the_repository(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    found = [line for line in text.splitlines() if OUTSIDE.search(line)]
    assert found == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_lead_to_files_of_the_repository(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue
        assert (doc.parent / target).resolve().is_relative_to(ROOT), target
        assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which is missing"


@pytest.mark.parametrize("doc", [ROOT / "README.md", ROOT / "docs" / "operations.md"], ids=lambda p: p.name)
def test_every_aws_command_names_its_region(doc: Path) -> None:
    commands = [c for c in shell_commands(doc.read_text(encoding="utf-8")) if AWS_COMMAND.search(c)]
    assert commands, "the check found no aws command at all"
    assert [c for c in commands if "--region" not in c] == []


def test_the_sam_commands_of_the_readme_name_their_region_or_use_the_saved_one() -> None:
    commands = [c for c in shell_commands((ROOT / "README.md").read_text(encoding="utf-8")) if "sam delete --" in c]
    assert commands
    assert all("--region" in c for c in commands)


def test_deploy_steps_come_in_a_working_order() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Deploying to AWS") : text.index("## Configuration")]
    steps = re.findall(r"^\d+\. \*\*(.+?)\*\*", section, flags=re.MULTILINE)
    # the secrets first: `webhook register` reads the BuildNexion api_key and stores the webhook secret itself
    order = [
        next(i for i, s in enumerate(steps) if word in s.lower()) for word in ("deploy", "store", "register", "check")
    ]
    assert order == sorted(order), steps
    for needed in (
        "TuimprentaWebhookUrl",
        "webhook_secret",
        "AlarmEmail",
        "samconfig.toml",
        "samconfig.user.toml",
        "has no authentication",
        "sam delete",
        "Retain",
        "### Upgrading",
    ):
        assert needed in section, needed


def test_every_cli_option_is_described_in_help_and_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The local stack") : readme.index("## What the webhook answers")]
    commands = subcommands(subcommands(build_parser())["local"])
    assert set(commands) == {"serve", "wait", "send", "sign", "demo", "inspect"}
    for name, command in commands.items():
        assert f"local {name}" in section
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.dest} has no help text"
            for option in action.option_strings:
                assert option in section, f"README does not mention {name} {option}"
