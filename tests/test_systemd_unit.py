"""The shipped systemd unit: required directives, and `systemd-analyze verify` where available."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "alertgw.service"

Directives = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Directives:
    """Parse a unit file into section -> [(key, value)], keeping repeated keys in order."""
    sections: Directives = {}
    current: list[tuple[str, str]] | None = None
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            logical += line[:-1].rstrip() + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        assert current is not None, f"directive outside a section: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Directives, section: str, key: str) -> list[str]:
    """Every value given for `key` in `section`, in file order."""
    return [v for k, v in unit.get(section, []) if k == key]


@pytest.fixture(scope="module")
def unit() -> Directives:
    """The parsed shipped unit file."""
    return parse_unit(UNIT.read_text())


REQUIRED = [
    ("Type", "notify"),
    ("NotifyAccess", "main"),
    ("ExecStart", "/opt/alertgw/.venv/bin/alertgw run /etc/alertgw/alertgw.yaml"),
    ("WatchdogSec", "30"),
    ("Restart", "always"),
    ("RestartSec", "2"),
    ("RestartPreventExitStatus", str(os.EX_CONFIG)),
    ("TimeoutStopSec", "30"),
    ("DynamicUser", "yes"),
    ("StateDirectory", "alertgw"),
    ("ConfigurationDirectory", "alertgw"),
    ("SupplementaryGroups", "dialout"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("NoNewPrivileges", "yes"),
    ("PrivateDevices", "no"),
    ("DevicePolicy", "closed"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("RestrictNamespaces", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("RestrictRealtime", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("CapabilityBoundingSet", ""),
    ("UMask", "0077"),
    ("Environment", "PYTHONUNBUFFERED=1"),
]


@pytest.mark.parametrize(("key", "expected"), REQUIRED, ids=[k for k, _ in REQUIRED])
def test_service_directive(unit: Directives, key: str, expected: str) -> None:
    """Each required [Service] directive is set exactly once, to the expected value."""
    assert values(unit, "Service", key) == [expected]


def test_reload_fails_when_the_file_is_broken_or_refused(unit: Directives) -> None:
    """`systemctl reload` runs `alertgw reload`: it fails unless the daemon applied the file."""
    assert values(unit, "Service", "ExecReload") == [
        "/opt/alertgw/.venv/bin/alertgw reload /etc/alertgw/alertgw.yaml",
    ]


def test_the_daemon_runs_in_its_state_directory(unit: Directives) -> None:
    """A relative journal.path lands in the writable StateDirectory, not read-only /var."""
    (state,) = values(unit, "Service", "StateDirectory")
    assert values(unit, "Service", "WorkingDirectory") == [f"/var/lib/{state}"]


def test_serial_device_classes_allowed(unit: Directives) -> None:
    """Only the serial device classes are allowed past DevicePolicy=closed, read-write."""
    assert sorted(values(unit, "Service", "DeviceAllow")) == [
        "char-ttyACM rw",
        "char-ttyAMA rw",
        "char-ttyS rw",
        "char-ttyUSB rw",
    ]


def test_private_devices_choice_is_explained() -> None:
    """The PrivateDevices=no line is preceded by a comment naming the serial ports."""
    lines = UNIT.read_text().splitlines()
    at = lines.index("PrivateDevices=no")
    comment = " ".join(line for line in lines[max(0, at - 4) : at] if line.startswith("#"))
    assert "tty" in comment
    assert "serial" in comment


def test_unit_starts_after_the_clock_source_without_waiting_for_it(unit: Directives) -> None:
    """Ordered after time-sync.target, never requiring it: no NTP must not mean no alarms."""
    assert "time-sync.target" in " ".join(values(unit, "Unit", "After")).split()
    for key in ("Wants", "Requires", "BindsTo", "Requisite"):
        assert "time-sync.target" not in " ".join(values(unit, "Unit", key))


def test_unit_is_installable(unit: Directives) -> None:
    """[Install] wires the unit into multi-user.target so `systemctl enable` works."""
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]


def test_parser_keeps_repeats_and_continuations() -> None:
    """The test parser keeps repeated keys, joins backslash continuations and skips comments."""
    parsed = parse_unit("# c\n[Service]\nA=1\n; c\nA=2\nB=x \\\n  y\n")
    assert parsed == {"Service": [("A", "1"), ("A", "2"), ("B", "x y")]}


def verify(unit_text: str, tmp_path: Path) -> list[str]:
    """Run `systemd-analyze verify` on a copy runnable here; return its lines about this unit."""
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze not installed (Debian package `systemd`)")
    # verify insists ExecStart's binary exists; the venv under /opt does not exist here.
    runnable = re.sub(
        r"^(ExecStart|ExecReload)=/opt/.*$",
        rf"\1={sys.executable} -c pass",
        unit_text,
        flags=re.MULTILINE,
    )
    copy = tmp_path / "alertgw.service"
    copy.write_text(runnable)
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "warning", "SYSTEMD_LOG_COLOR": "0"}
    result = subprocess.run(
        [binary, "verify", str(copy)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    # Other units on the host may have problems of their own; only ours count. Warnings about
    # ours count too: a misspelt directive is only a warning ("Unknown key ..., ignoring").
    output = (result.stdout + result.stderr).splitlines()
    return [line for line in output if str(copy) in line or line.startswith(copy.name)]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd itself finds nothing wrong with the unit."""
    assert verify(UNIT.read_text(), tmp_path) == []


def test_systemd_analyze_verify_catches_a_typo(tmp_path: Path) -> None:
    """The verify check is not vacuous: a misspelt directive is reported against our unit."""
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    problems = verify(broken, tmp_path)
    assert any("ProtectSytem" in line for line in problems), problems
